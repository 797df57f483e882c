"""The dispatcher service: FastStream wiring of the durable pull consumer on AUDIO.

- :func:`build_router`: the subscriber (durable ``dispatcher``, the name KEDA's scaler reads;
  pull, manual acks, the consumer config of :func:`.consumer.consumer_config`) and the channels
  the dispatcher publishes, so the AsyncAPI export describes the service as it runs
  (:mod:`services.asyncapi` imports the module-level :data:`router`).
- the broker is :func:`services.common.broker.build_broker` (``NatsTelemetryMiddleware``, shared
  connection options); its connection also serves the status KV, the Object Stores and the
  dispatcher's own publications.
- :func:`build_app`: the ``FastStream`` app; its lifespan runs the start-up checks of
  :mod:`.preflight`, connects, ensures the topology (the stream is never redeclared by FastStream:
  ``JStream(declare=False)``), picks the job backend and starts the :class:`.consumer.Dispatcher`,
  which the subscriber receives through ``Context``.
- :func:`serve`: the service contract of ``kubescribe serve dispatcher``.

The handler returns as soon as the dispatcher has taken the message; the dispatcher settles it
later. What bounds the messages one replica holds is :mod:`.holding` (its handler waits for room,
which stalls the fetch loop) plus one fetch batch; JetStream's ``max_ack_pending`` caps the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from faststream import ContextRepo, FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsRouter, PullSub

from services.common.broker import build_broker, connect_with_topology, run_until_cancelled
from services.common.events import RecordingFailed, Stage, failed_subject
from services.common.messaging import Channel, declare_publishers
from services.common.settings import DispatcherSettings, Settings
from services.common.telemetry import setup_telemetry
from services.common.topology import (
    AUDIO_RECEIVED,
    AUDIO_STREAM,
    DISPATCHER_CONSUMER,
)
from services.dispatcher import backends, preflight
from services.dispatcher.backends import JobBackend
from services.dispatcher.consumer import Dispatcher, consumer_config
from services.dispatcher.handlers import DISPATCHER, decode_leniently, on_audio_received

__all__ = ["build_app", "build_router", "router", "serve"]

logger = logging.getLogger(__name__)

FETCH_BATCH = 32
"""Messages per pull request: a burst of uploads is taken in a few quick requests and packed
together, while what one replica has fetched beyond its hold limit stays small, so a second
replica gets work at once."""
FETCH_TIMEOUT_S = 1.0
"""How long one idle pull request waits at the server. Short, because a message the server hands to
a request outstanding at shutdown waits for ``ack_wait`` before it is redelivered."""


def build_router(
    *,
    durable: str = DISPATCHER_CONSUMER,
    ack_wait_s: float = DispatcherSettings.model_fields["ack_wait_s"].default,
    deliver_new: bool = False,
) -> NatsRouter:
    """The dispatcher's subscriber and publishers (tests pass their own ``durable``)."""
    router = NatsRouter()
    router.subscriber(
        AUDIO_RECEIVED,
        stream=JStream(AUDIO_STREAM, declare=False),  # ensure_topology owns the stream
        durable=durable,
        config=consumer_config(ack_wait_s=ack_wait_s, durable=durable, deliver_new=deliver_new),
        pull_sub=PullSub(batch_size=FETCH_BATCH, timeout=FETCH_TIMEOUT_S),
        ack_policy=AckPolicy.MANUAL,  # the Dispatcher acks, naks or reports every message, later
        decoder=decode_leniently,
        no_reply=True,
        title="dispatcher:AudioReceived",
        description=(
            "Plans transcription jobs: packs short recordings and picks the model and slice profile. "
            f"Durable pull consumer `{DISPATCHER_CONSUMER}` (named by KEDA's scaler); a message is "
            "acked once its recording is transcribed or failed."
        ),
    )(on_audio_received)
    # Declared for the AsyncAPI document; the dispatcher publishes with report_failure (Nats-Msg-Id).
    declare_publishers(
        router,
        "dispatcher",
        [
            Channel(
                failed_subject(Stage.dispatch),
                RecordingFailed,
                "RecordingFailed",
                "A recording that cannot be dispatched (invalid event, missing audio), with the reason.",
            ),
            Channel(
                failed_subject(Stage.transcribe),
                RecordingFailed,
                "TranscribeFailed",
                "A recording whose transcription jobs ended without a transcript `max_attempts` times.",
            ),
        ],
    )
    return router


router = build_router()
"""The router as deployed (durable ``dispatcher``), for the AsyncAPI export."""


def build_app(
    settings: Settings | None = None,
    *,
    backend: JobBackend | None = None,
    durable: str = DISPATCHER_CONSUMER,
    deliver_new: bool = False,
) -> FastStream:
    """The FastStream app. ``backend`` (closed when the app's lifespan ends, however it ends)
    overrides ``KUBESCRIBE_BACKEND``; ``durable``/``deliver_new`` let tests use a consumer of their own."""
    settings = settings or Settings()
    broker = build_broker(
        settings,
        name="kubescribe-dispatcher",
        routers=(build_router(durable=durable, ack_wait_s=settings.dispatcher.ack_wait_s, deliver_new=deliver_new),),
        logger=logger,
    )

    @contextlib.asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        chosen = backend
        dispatcher: Dispatcher | None = None
        try:
            preflight.check_models(settings)  # before anything connects: a model that cannot load
            js = await connect_with_topology(broker, settings)
            chosen = chosen or backends.create(settings.dispatcher.backend, settings=settings)
            await preflight.check_queues(settings, getattr(chosen, "api_client", None))
            dispatcher = Dispatcher(js, chosen, settings)
            await dispatcher.start()
            context.set_global(DISPATCHER, dispatcher)
            logger.info("dispatcher consuming %s as %s with the %s backend", AUDIO_RECEIVED, durable, chosen.kind)
            yield
        finally:
            context.reset_global(DISPATCHER)
            if dispatcher is not None:
                await dispatcher.stop()  # a no-op after stop_dispatching
            if chosen is not None:
                await chosen.aclose()
            await broker.stop()  # closes the connection if the app never started (a failed lifespan)

    async def stop_dispatching(context: ContextRepo) -> None:
        """Stop fetching, then stop the dispatcher (which hands its held messages back) while the
        connection is still open for the naks.

        The room closes first: a handler waiting for room (the dispatcher holds its bound) would
        otherwise keep the subscriber's stop waiting for it, and the room frees only when a job
        ends, so a graceful stop hung until the supervisor's kill (the SIGTERM chaos test)."""
        dispatcher: Dispatcher | None = context.get(DISPATCHER)
        if dispatcher is not None:
            dispatcher.room.close()  # waiting handlers hand their messages back at once
        for subscriber in broker.subscribers:
            await subscriber.stop()
        if dispatcher is not None:
            await dispatcher.stop()

    return FastStream(broker, lifespan=lifespan, on_shutdown=[stop_dispatching], logger=logger)


async def serve(
    settings: Settings | None = None,
    *,
    ready: asyncio.Event | None = None,
    backend: JobBackend | None = None,
    durable: str = DISPATCHER_CONSUMER,
    deliver_new: bool = False,
) -> None:
    """Run until cancelled (the service contract of ``kubescribe serve dispatcher``).

    ``backend`` (closed on exit either way) overrides ``KUBESCRIBE_BACKEND``;
    ``durable``/``deliver_new`` let tests use a consumer of their own. Not ``FastStream.run``:
    it installs its own signal handlers, and here whoever runs :func:`serve` (the runtime's
    process, a test) owns the signals and cancels the task.
    """
    settings = settings or Settings()
    setup_telemetry("kubescribe-dispatcher")
    app = build_app(settings, backend=backend, durable=durable, deliver_new=deliver_new)
    await run_until_cancelled(app, ready)
