"""The summarizer service: a durable pull consumer on TRANSCRIPTS with bounded concurrency.

Why a pull consumer with explicit acks and a semaphore: the summarizer only fetches as many
messages as it has free slots (``SummarizerSettings.concurrency``), so when the gateway is slow
the backlog stays in JetStream, where KEDA's ``nats-jetstream`` scaler sees it as consumer lag
(the durable is named ``summarizer`` for that reason), instead of piling up in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.nats_client import connect
from services.common.settings import Settings
from services.common.telemetry import setup_telemetry
from services.common.topology import SUMMARIZER_CONSUMER, TRANSCRIPT_READY, TRANSCRIPTS_STREAM, ensure_topology
from services.summarizer.client import ChatClient, RetryPolicy, instrument_httpx
from services.summarizer.handlers import SummarizeHandler
from services.summarizer.prompts import PromptBuilder
from services.summarizer.settings import PromptSettings, SummarizerServiceSettings

logger = logging.getLogger(__name__)

MAX_DELIVER = 5
"""A message whose handler crashed (a bug, NATS down) this many times is reported, not retried forever."""


class SummarizerConsumer:
    """Fetches at most ``concurrency`` messages at a time and handles each in its own task."""

    def __init__(
        self,
        js: JetStreamContext,
        handler: SummarizeHandler,
        *,
        concurrency: int,
        durable: str = SUMMARIZER_CONSUMER,
        ack_wait_s: float = 60.0,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"KUBESCRIBE_SUMMARIZER_CONCURRENCY must be >= 1, got {concurrency}")
        self.js = js
        self.handler = handler
        self.concurrency = concurrency
        self.durable = durable
        self.ack_wait_s = ack_wait_s
        self.deliver_policy = deliver_policy
        self.in_flight = 0
        self.peak_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        return await self.js.pull_subscribe(
            TRANSCRIPT_READY,
            durable=self.durable,
            stream=TRANSCRIPTS_STREAM,
            config=ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_deliver=MAX_DELIVER,
                deliver_policy=self.deliver_policy,
                filter_subject=TRANSCRIPT_READY,
                description="kubescribe summarizer: TranscriptReady -> SummaryReady",
            ),
        )

    async def run(self, ready: asyncio.Event | None = None) -> None:
        subscription = await self.subscribe()
        slots = asyncio.Semaphore(self.concurrency)
        if ready is not None:
            ready.set()
        logger.info("summarizer consuming %s as %s (concurrency %d)", TRANSCRIPT_READY, self.durable, self.concurrency)
        try:
            while True:
                await slots.acquire()
                taken = 1
                while taken < self.concurrency and not slots.locked():
                    await slots.acquire()
                    taken += 1
                try:
                    messages = await subscription.fetch(taken, timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    messages = []
                except Exception:
                    for _ in range(taken):
                        slots.release()
                    logger.warning("fetch from %s failed; retrying", self.durable, exc_info=True)
                    await asyncio.sleep(0.5)
                    continue
                for _ in range(taken - len(messages)):
                    slots.release()
                for message in messages:
                    task = asyncio.create_task(self._handle(message, slots))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _handle(self, message: Msg, slots: asyncio.Semaphore) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        keepalive = asyncio.create_task(self._keep_alive(message))
        try:
            await self.handler.handle(message.data, message.headers, message.subject)
            await message.ack()
        except asyncio.CancelledError:
            raise  # shutting down: the message is redelivered to the next consumer
        except Exception as exc:
            delivered = message.metadata.num_delivered if message.metadata else 1
            logger.exception("handling %s failed (delivery %d)", message.subject, delivered)
            if delivered >= MAX_DELIVER:
                await self._give_up(message, exc, delivered)
            else:
                with contextlib.suppress(Exception):
                    await message.nak(delay=min(30.0, 2.0**delivered))
        finally:
            keepalive.cancel()
            self.in_flight -= 1
            slots.release()

    async def _give_up(self, message: Msg, exc: Exception, delivered: int) -> None:
        from services.common.events import Stage, recording_id_of
        from services.common.messaging import report_failure
        from services.summarizer.handlers import SOURCE

        with contextlib.suppress(Exception):
            await report_failure(
                self.js,
                stage=Stage.summarize,
                reason=f"summarizer crashed {delivered} times on this message: {type(exc).__name__}: {exc}",
                retryable=True,
                source=SOURCE,
                recording_id=recording_id_of(message.data),
                attempts=delivered,
                error=exc,
                subject=message.subject,
            )
            await message.ack()

    async def _keep_alive(self, message: Msg) -> None:
        """In-progress acks so a long generation is not redelivered while it runs."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.ack_wait_s / 3)
                with contextlib.suppress(Exception):
                    await message.in_progress()


def build_handler(js: JetStreamContext, settings: Settings, client: ChatClient | None = None) -> SummarizeHandler:
    client = client or ChatClient(
        settings.llm,
        retry=RetryPolicy.from_settings(settings.summarizer),
        max_connections=max(16, settings.summarizer.concurrency * 2),
    )
    return SummarizeHandler(js, client, PromptBuilder(settings.llm, PromptSettings()))


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
    service = SummarizerServiceSettings()
    if service.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(service.metrics_port)
    nc = await connect(settings.nats, name="kubescribe-summarizer")
    handler: SummarizeHandler | None = None
    try:
        js = nc.jetstream(timeout=settings.nats.request_timeout)
        await ensure_topology(js, settings.streams)
        handler = build_handler(js, settings)
        consumer = SummarizerConsumer(
            js,
            handler,
            concurrency=settings.summarizer.concurrency,
            durable=durable,
            ack_wait_s=service.ack_wait_s,
            deliver_policy=deliver_policy,
        )
        await consumer.run(ready)
    finally:
        if handler is not None:
            await handler.client.aclose()
        with contextlib.suppress(Exception):
            await nc.drain()
