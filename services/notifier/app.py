"""The notifier service: FastStream wiring of two durable pull consumers, SUMMARIES and FAILED.

It is its own service so a slow or dead webhook receiver never holds up a summary or a
transcription: the pipeline publishes its outcome events as always, and this consumer reads
them with its own durable (``notifier`` on both streams), retrying deliveries through
JetStream redelivery (see :mod:`services.notifier.handlers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from faststream import ContextRepo, FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsRouter, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.common.broker import build_broker, connect_with_topology, run_until_cancelled
from services.common.settings import NotifierSettings, Settings
from services.common.telemetry import setup_telemetry
from services.common.topology import (
    FAILED_STREAM,
    NOTIFIER_CONSUMER,
    SUMMARIES_STREAM,
    SUMMARY_READY,
)
from services.notifier.handlers import NOTIFIER, Notifier, on_outcome

__all__ = ["FAILED_SUBJECTS", "build_app", "build_router", "router", "serve"]

logger = logging.getLogger(__name__)

FAILED_SUBJECTS = "kubescribe.*.failed"
CONCURRENCY = 8
"""Deliveries in flight at once: a few slow receivers must not delay the others' webhooks."""


def build_router(
    *,
    durable: str = NOTIFIER_CONSUMER,
    ack_wait_s: float = NotifierSettings.model_fields["ack_wait_s"].default,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> NatsRouter:
    """The notifier's two subscribers (tests pass their own ``durable``)."""
    router = NatsRouter()
    for subject, stream, what in (
        (SUMMARY_READY, SUMMARIES_STREAM, "SummaryReady"),
        (FAILED_SUBJECTS, FAILED_STREAM, "RecordingFailed"),
    ):
        router.subscriber(
            subject,
            stream=JStream(stream, declare=False),  # ensure_topology owns the streams
            durable=durable,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=JsAckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_deliver=-1,  # the retry deadline, not a delivery count, ends the retries
                deliver_policy=deliver_policy,
                filter_subject=subject,
                description=f"kubescribe notifier: {what} -> signed webhook",
            ),
            pull_sub=PullSub(timeout=1.0),
            max_workers=CONCURRENCY,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            title=f"notifier:{what}",
            description="POSTs a signed webhook (docs/webhooks.md); retries by nak with backoff.",
        )(on_outcome)
    return router


router = build_router()
"""The router as deployed (durable ``notifier``), for the AsyncAPI export."""


def build_app(
    settings: Settings | None = None,
    *,
    durable: str = NOTIFIER_CONSUMER,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> FastStream:
    settings = settings or Settings()
    broker = build_broker(
        settings,
        name="kubescribe-notifier",
        routers=(
            build_router(durable=durable, ack_wait_s=settings.notifier.ack_wait_s, deliver_policy=deliver_policy),
        ),
        logger=logger,
    )

    @contextlib.asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        js = await connect_with_topology(broker, settings)
        timeout = httpx.Timeout(settings.notifier.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            context.set_global(NOTIFIER, Notifier(js, settings, client))
            logger.info("notifier consuming %s and %s as %s", SUMMARY_READY, FAILED_SUBJECTS, durable)
            try:
                yield
            finally:
                context.reset_global(NOTIFIER)

    return FastStream(broker, lifespan=lifespan, logger=logger)


async def serve(
    settings: Settings | None = None,
    *,
    ready: asyncio.Event | None = None,
    durable: str = NOTIFIER_CONSUMER,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> None:
    """Run the notifier until cancelled (the service contract of ``kubescribe serve notifier``)."""
    settings = settings or Settings()
    setup_telemetry("kubescribe-notifier")
    await run_until_cancelled(build_app(settings, durable=durable, deliver_policy=deliver_policy), ready)
