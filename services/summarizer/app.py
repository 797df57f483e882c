"""The summarizer service: FastStream wiring of a durable pull consumer on TRANSCRIPTS.

- :func:`build_router`: the subscriber (durable ``summarizer``, the name KEDA's scaler reads;
  pull, explicit acks) and the channels it publishes, so the AsyncAPI export describes the
  service as it runs (:mod:`services.asyncapi` imports the module-level :data:`router`).
- the broker is :func:`services.common.broker.build_broker` (``NatsTelemetryMiddleware``, so the
  trace context travels in the message headers).
- :func:`build_app`: the ``FastStream`` app; its lifespan connects, ensures the topology (the
  stream is never redeclared by FastStream: ``JStream(declare=False)``) and builds the
  long-lived resources (the gateway's httpx client, the prompt builder, the
  :class:`~services.summarizer.consumer.Summarizer` and the
  :class:`~services.common.inflight.InFlight` that runs it), which the subscriber receives
  through ``Context``.
- :func:`serve`: the service contract of ``kubescribe serve summarizer``.

Concurrency (``SummarizerSettings.concurrency``) is bounded by :class:`InFlight`, which also
makes sure that no message is fetched before a slot is free, and settles every message (see
:mod:`services.common.inflight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from faststream import ContextRepo, FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsRouter, PullSub
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.common.broker import build_broker, connect_with_topology, run_until_cancelled
from services.common.events import RecordingFailed, Stage, SummaryReady, failed_subject
from services.common.inflight import MAX_DELIVER, InFlight
from services.common.messaging import Channel, declare_publishers
from services.common.settings import Settings, SummarizerSettings
from services.common.telemetry import setup_telemetry
from services.common.topology import (
    SUMMARIZER_CONSUMER,
    SUMMARY_READY,
    TRANSCRIPT_READY,
    TRANSCRIPTS_STREAM,
)
from services.summarizer.client import ChatClient, RetryPolicy, instrument_httpx
from services.summarizer.consumer import Summarizer
from services.summarizer.handlers import INFLIGHT, on_transcript_ready
from services.summarizer.prompts import PromptBuilder
from services.summarizer.settings import PromptSettings

__all__ = ["MAX_DELIVER", "build_app", "build_router", "build_summarizer", "router", "serve"]

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 1.0
"""How long one idle pull request waits at the server. Short, because a message the server hands to
a request outstanding at shutdown waits for ``ack_wait`` before it is redelivered."""


def build_router(
    *,
    durable: str = SUMMARIZER_CONSUMER,
    ack_wait_s: float = SummarizerSettings.model_fields["ack_wait_s"].default,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> NatsRouter:
    """The summarizer's subscriber and publishers (tests pass their own ``durable``)."""
    router = NatsRouter()
    router.subscriber(
        TRANSCRIPT_READY,
        stream=JStream(TRANSCRIPTS_STREAM, declare=False),  # ensure_topology owns the stream
        durable=durable,
        config=ConsumerConfig(
            durable_name=durable,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=MAX_DELIVER,
            deliver_policy=deliver_policy,
            filter_subject=TRANSCRIPT_READY,
            description="kubescribe summarizer: TranscriptReady -> SummaryReady",
        ),
        # One message per fetch, and the next fetch only once InFlight has a free slot.
        pull_sub=PullSub(batch_size=1, timeout=FETCH_TIMEOUT_S),
        ack_policy=AckPolicy.MANUAL,  # InFlight acks, naks or reports every message
        no_reply=True,
        title="summarizer:TranscriptReady",
        description=(
            "Streams a summary from the OpenAI-compatible gateway (GAIE/llm-d or the local server). "
            f"Durable pull consumer `{SUMMARIZER_CONSUMER}` (named by KEDA's scaler)."
        ),
    )(on_transcript_ready)
    # Declared for the AsyncAPI document; the handler publishes with publish_event (Nats-Msg-Id).
    declare_publishers(
        router,
        "summarizer",
        [
            Channel(
                SUMMARY_READY, SummaryReady, "SummaryReady", "The summary document is in the `summaries` Object Store."
            ),
            Channel(
                failed_subject(Stage.summarize),
                RecordingFailed,
                "RecordingFailed",
                "A transcript that could not be summarized (retryable after a gateway storm).",
            ),
        ],
    )
    return router


router = build_router()
"""The router as deployed (durable ``summarizer``), for the AsyncAPI export."""


def build_summarizer(js: JetStreamContext, settings: Settings, client: ChatClient | None = None) -> Summarizer:
    client = client or ChatClient(
        settings.llm,
        retry=RetryPolicy.from_settings(settings.summarizer),
        max_connections=max(16, settings.summarizer.concurrency * 2),
    )
    return Summarizer(js, client, PromptBuilder(settings.llm, PromptSettings()))


def build_app(
    settings: Settings | None = None,
    *,
    durable: str = SUMMARIZER_CONSUMER,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> FastStream:
    """The FastStream app (``faststream run services.summarizer.app:build_app --factory`` works too)."""
    settings = settings or Settings()
    broker = build_broker(
        settings,
        name="kubescribe-summarizer",
        routers=(
            build_router(durable=durable, ack_wait_s=settings.summarizer.ack_wait_s, deliver_policy=deliver_policy),
        ),
        logger=logger,
    )

    @contextlib.asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        js = await connect_with_topology(broker, settings)
        summarizer = build_summarizer(js, settings)
        inflight = InFlight(
            summarizer.handle,
            report=summarizer.report,
            concurrency=settings.summarizer.concurrency,
            ack_wait_s=settings.summarizer.ack_wait_s,
            name="summarize",
        )
        context.set_global(INFLIGHT, inflight)
        logger.info(
            "summarizer consuming %s as %s (concurrency %d)", TRANSCRIPT_READY, durable, settings.summarizer.concurrency
        )
        try:
            yield
        finally:
            await inflight.aclose()  # a no-op after stop_summaries
            await summarizer.client.aclose()
            context.reset_global(INFLIGHT)

    async def stop_summaries(context: ContextRepo) -> None:
        """Stop fetching, then hand the summaries in progress back to JetStream.

        In this order because the subscriber may be waiting in :meth:`InFlight.admit` for a slot:
        stopping it first marks it not running (its fetch loop ends when admit returns), then
        closing InFlight frees the slots (their messages are nak'ed) and admit returns.
        """
        inflight: InFlight | None = context.get(INFLIGHT)
        stopping = [asyncio.create_task(subscriber.stop()) for subscriber in broker.subscribers]
        await asyncio.sleep(0)  # each stop marks its subscriber not running before its first await
        if inflight is not None:
            await inflight.aclose()
        await asyncio.gather(*stopping)

    return FastStream(broker, lifespan=lifespan, on_shutdown=[stop_summaries], logger=logger)


async def serve(
    settings: Settings | None = None,
    *,
    ready: asyncio.Event | None = None,
    durable: str = SUMMARIZER_CONSUMER,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> None:
    """Run the summarizer until cancelled (the service contract of ``kubescribe serve summarizer``)."""
    settings = settings or Settings()
    setup_telemetry("kubescribe-summarizer")
    instrument_httpx()
    app = build_app(settings, durable=durable, deliver_policy=deliver_policy)
    await run_until_cancelled(app, ready)
