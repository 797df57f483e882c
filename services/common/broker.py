"""The FastStream broker every consumer service runs on, built one way.

Each service (dispatcher, summarizer) brings its own ``NatsRouter``; this module owns what they
share: connection options from :class:`NatsSettings` (credentials, reconnect forever), trace
propagation through NATS headers (``NatsTelemetryMiddleware``), a bounded *initial* connect that
fails with a readable error, and the ``serve`` loop of the service contract.
"""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from faststream.nats import NatsBroker, NatsRouter
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.security import BaseSecurity
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from services.common.logs import OneLineNatsErrors
from services.common.nats_client import initial_connect_attempts, log_connection_error, unreachable
from services.common.settings import NatsSettings, Settings
from services.common.topology import ensure_consumers, ensure_topology


def broker_security(nats: NatsSettings) -> BaseSecurity | None:
    """FastStream's form of the credentials in :class:`NatsSettings`."""
    if nats.creds_file:
        from faststream.nats import NatsCredentials

        return NatsCredentials(str(nats.creds_file))
    if nats.user:
        from faststream.nats import NatsUserPassword

        return NatsUserPassword(nats.user, nats.password or "")
    return None


def build_broker(
    settings: Settings | None,
    *,
    name: str,
    routers: tuple[NatsRouter, ...] = (),
    logger: logging.Logger | None = None,
) -> NatsBroker:
    """A broker with the connection options every service shares and trace propagation in headers."""
    nats = (settings or Settings()).nats
    if logger is not None and not any(isinstance(f, OneLineNatsErrors) for f in logger.filters):
        logger.addFilter(OneLineNatsErrors())
    return NatsBroker(
        nats.servers,
        name=name,
        connect_timeout=nats.connect_timeout,
        max_reconnect_attempts=initial_connect_attempts(nats),
        reconnect_time_wait=nats.connect_options()["reconnect_time_wait"],
        error_cb=log_connection_error,
        security=broker_security(nats),
        middlewares=(NatsTelemetryMiddleware(),),
        routers=routers,
        logger=logger,
        description="Embedded nats-server or the cluster's NATS",
    )


async def connect_jetstream(broker: NatsBroker, nats: NatsSettings) -> JetStreamContext:
    """Connect (for about ``connect_timeout``), then reconnect forever; a missing server is one readable error."""
    try:
        connection = await asyncio.wait_for(broker.connect(), timeout=nats.connect_timeout * 3)
    except (NoServersError, OSError, TimeoutError) as exc:
        raise unreachable(nats, exc) from exc
    connection.options["max_reconnect_attempts"] = -1
    return connection.jetstream(timeout=nats.request_timeout)


async def connect_with_topology(broker: NatsBroker, settings: Settings) -> JetStreamContext:
    """Every consumer service's first step: connect, then put the streams, buckets and stores and
    this broker's durable consumers in place (both wait out a forming cluster), before FastStream
    starts the subscribers."""
    js = await connect_jetstream(broker, settings.nats)
    await ensure_topology(js, settings.streams)
    await ensure_consumers(js, durable_consumers(broker), settings.streams)
    return js


def durable_consumers(broker: NatsBroker) -> list[tuple[str, ConsumerConfig]]:
    """Each JetStream subscriber's ``(stream, consumer config)``: what
    :func:`~services.common.topology.ensure_consumers` creates before the subscribers start."""
    consumers = []
    for subscriber in broker.subscribers:
        stream, config = getattr(subscriber, "stream", None), getattr(subscriber, "config", None)
        if stream is not None and isinstance(config, ConsumerConfig) and config.durable_name:
            consumers.append((stream.name, config))
    return consumers


async def run_until_cancelled(app: FastStream, ready: asyncio.Event | None = None) -> None:
    """The service contract's loop: start, signal ``ready``, run until the task is cancelled.

    Not ``FastStream.run``: it installs its own signal handlers, and here whoever runs the service
    (the runtime's process, a test) owns the signals and cancels the task.
    """
    async with app.lifespan_context():
        try:
            await app.start()
            if ready is not None:
                ready.set()
            await asyncio.Event().wait()
        finally:
            await app.stop()
