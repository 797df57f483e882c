"""The summaries being generated right now: at most ``concurrency`` of them, each settled explicitly.

Why the subscriber waits here before returning: FastStream's pull subscriber (``PullSub``, one
message per fetch) fetches the next message only once the handler has returned, and
:meth:`InFlight.admit` returns only once a slot is free. So the service never holds a message it
has no slot for: when the gateway is slow the backlog stays in JetStream, where KEDA's
``nats-jetstream`` scaler sees it as lag of the ``summarizer`` consumer, and no message waits in
memory while its ``ack_wait`` runs out. (FastStream's ``max_workers`` bounds the handlers, but its
fetch loop already holds the next message while every worker is busy.)

Every message is settled by this module, never by FastStream (``AckPolicy.MANUAL``):

- handled (summarized, duplicate, invalid or failed with a ``RecordingFailed``): ``ack``;
- the handler crashed (a bug, NATS down): ``nak`` with backoff, and after ``max_deliver``
  deliveries a retryable ``RecordingFailed`` and ``ack``, so nothing loops forever and nothing
  is dropped silently;
- shutting down mid-summary: ``nak`` at once, so another replica picks it up without waiting
  for ``ack_wait``.

While a summary runs, an in-progress ack every third of ``ack_wait`` keeps JetStream from
redelivering a long generation to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faststream.nats import NatsMessage

    from services.summarizer.handlers import SummarizeHandler

logger = logging.getLogger(__name__)

MAX_DELIVER = 5
"""A message whose handler crashed (a bug, NATS down) this many times is reported, not retried forever."""


class InFlight:
    """Runs each admitted message in its own task, never more than ``concurrency`` at once."""

    def __init__(
        self,
        handler: SummarizeHandler,
        *,
        concurrency: int,
        ack_wait_s: float,
        max_deliver: int = MAX_DELIVER,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"KUBESCRIBE_SUMMARIZER_CONCURRENCY must be >= 1, got {concurrency}")
        self.handler = handler
        self.concurrency = concurrency
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.running = 0
        self.peak = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def admit(self, message: NatsMessage) -> None:
        """Start handling ``message``; return once a slot is free for the next fetch."""
        if self._closed:  # fetched while shutting down: hand it straight back
            with contextlib.suppress(Exception):
                await message.nack()
            return
        # Free at once: the previous admit returned only when a slot was.
        await self._slots.acquire()
        task = asyncio.create_task(self._run(message), name=f"summarize-{message.message_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._slots.acquire()
        self._slots.release()

    async def aclose(self) -> None:
        """Stop every summary in progress (their messages are nak'ed) and admit no more."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, message: NatsMessage) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        keepalive = asyncio.create_task(self._keep_alive(message))
        raw = message.raw_message
        try:
            await self.handler.handle(message.body, message.headers, raw.subject)
            await message.ack()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await message.nack()
            raise
        except Exception as exc:
            delivered = raw.metadata.num_delivered if raw.metadata else 1
            logger.exception("handling %s failed (delivery %d of %d)", raw.subject, delivered, self.max_deliver)
            if delivered >= self.max_deliver:
                await self._give_up(message, exc, delivered)
            else:
                with contextlib.suppress(Exception):
                    await message.nack(delay=min(30.0, 2.0**delivered))
        finally:
            keepalive.cancel()
            self.running -= 1
            self._slots.release()

    async def _give_up(self, message: NatsMessage, exc: Exception, delivered: int) -> None:
        from services.common.events import Stage, recording_id_of
        from services.common.messaging import report_failure
        from services.summarizer.handlers import SOURCE  # handlers imports this module

        with contextlib.suppress(Exception):
            await report_failure(
                self.handler.js,
                stage=Stage.summarize,
                reason=f"summarizer crashed {delivered} times on this message: {type(exc).__name__}: {exc}",
                retryable=True,
                source=SOURCE,
                recording_id=recording_id_of(message.body),
                attempts=delivered,
                error=exc,
                subject=message.raw_message.subject,
            )
            await message.ack()

    async def _keep_alive(self, message: NatsMessage) -> None:
        """In-progress acks so a long generation is not redelivered while it runs."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.ack_wait_s / 3)
                with contextlib.suppress(Exception):
                    await message.in_progress()
