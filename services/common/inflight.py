"""The messaging boundary: how a consumed JetStream message is kept alive and settled.

Handlers raise; they never ack. This module decides what JetStream hears from the exception's
class (:mod:`services.common.errors`), the same way in every service:

==========================  ==============================================================
handled (no exception)      ``ack``
``PermanentError``          the service's reporter publishes ``kubescribe.<stage>.failed``
                            (not retryable), then ``ack``
``TemporaryError(delay)``   ``nak(delay=exc.delay)``; at ``max_deliver`` deliveries a
                            retryable failure report, then ``ack``
anything else (a bug, NATS  ``nak`` with exponential backoff; at ``max_deliver`` a
down)                       retryable failure report, then ``ack``
shutting down               ``nak`` at once, so another replica takes it without waiting
                            for ``ack_wait``
==========================  ==============================================================

So nothing loops forever and nothing is dropped silently: the last delivery JetStream makes is
the one that reports. A report that cannot be published leaves the message to be redelivered.

Two shapes of consumer share this:

- :class:`InFlight` (the summarizer): each message is handled in its own task, at most
  ``concurrency`` at once, and :meth:`InFlight.admit` returns only once a slot is free. With a
  pull subscriber that fetches one message when its handler returns (FastStream's ``PullSub``
  with ``batch_size=1``), the service never holds a message it has no slot for: a backlog stays in
  JetStream, where KEDA sees it as consumer lag, and no message waits in memory while its
  ``ack_wait`` runs out. (FastStream's ``max_workers`` bounds handlers, but its fetch loop already
  holds the next message while every worker is busy.)
- the dispatcher, which holds a message for its job's whole lifetime: it calls :func:`settle`
  itself when the outcome is known and keeps its held messages alive with a :class:`Keepalive`.

Messages are nats-py :class:`~nats.aio.msg.Msg` (FastStream's ``NatsMessage.raw_message``), with
the subscriber on ``AckPolicy.MANUAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from services.common.errors import ConfigurationError, PermanentError, TemporaryError

__all__ = [
    "MAX_DELIVER",
    "Failure",
    "FailureReporter",
    "InFlight",
    "Keepalive",
    "Settlement",
    "ack",
    "deliveries",
    "fail",
    "hand_back",
    "settle",
]

logger = logging.getLogger(__name__)

MAX_DELIVER = 5
"""Deliveries after which a message that keeps failing is reported instead of retried: enough to
ride out a gateway restart or a NATS leader election, few enough that a bug surfaces in minutes."""
CRASH_BACKOFF_S = 2.0
"""Nak delay after the first unexpected exception, doubled on each delivery (2, 4, 8, 16 s): a
bug or an outage is not hammered, and a blip is over by the second try."""
CRASH_BACKOFF_MAX_S = 30.0
"""Longest nak delay after an unexpected exception."""
MIN_KEEPALIVE_S = 0.5
"""Shortest interval between in-progress acks, so a tiny ``ack_wait`` in a test cannot spin."""


class Settlement(StrEnum):
    """What :func:`settle` told JetStream."""

    acked = "acked"
    retried = "retried"
    failed = "failed"
    handed_back = "handed_back"


@dataclass(frozen=True)
class Failure:
    """A message given up on: what the service's reporter turns into a ``RecordingFailed``."""

    error: BaseException | None
    """``None`` when the service itself gave up (the dispatcher after ``max_attempts`` jobs)."""
    retryable: bool
    """``False`` for a :class:`PermanentError`; ``True`` when retries ran out (resubmitting later may work)."""
    deliveries: int
    reason: str
    """What went wrong, without the service's own prefix (the reporter adds which recording, which stage)."""


FailureReporter = Callable[[Msg, Failure], Awaitable[object]]
"""Publishes the failure (``services.common.messaging.report_failure``); raising means "not reported"."""


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered ``msg`` (1 for a message without metadata)."""
    try:
        return msg.metadata.num_delivered or 1
    except Exception:  # not a JetStream message (core NATS): no metadata to read
        return 1


def _backoff(delivered: int, base_s: float = CRASH_BACKOFF_S) -> float:
    return min(CRASH_BACKOFF_MAX_S, base_s * 2.0 ** (delivered - 1))


async def _quietly(action: Awaitable[None]) -> None:
    """An ack/nak that fails (connection gone, already settled) leaves redelivery to ``ack_wait``."""
    with contextlib.suppress(Exception):
        await action


async def ack(msg: Msg) -> Settlement:
    """The message is handled: JetStream forgets it."""
    await _quietly(msg.ack())
    return Settlement.acked


async def hand_back(msg: Msg) -> Settlement:
    """``nak`` at once: another replica takes the message now, not after ``ack_wait``."""
    await _quietly(msg.nak())
    return Settlement.handed_back


async def settle(
    msg: Msg,
    error: BaseException | None,
    *,
    report: FailureReporter,
    max_deliver: int = MAX_DELIVER,
    backoff_s: float = CRASH_BACKOFF_S,
) -> Settlement:
    """Ack, nak (with a delay) or report ``msg``, decided by ``error``'s class (see the module docstring).

    ``max_deliver`` should be the consumer's own, so the last delivery JetStream makes reports;
    ``backoff_s`` is the first nak delay after an unexpected exception.
    """
    if error is None:
        return await ack(msg)
    if isinstance(error, asyncio.CancelledError):
        return await hand_back(msg)
    delivered = deliveries(msg)
    if isinstance(error, PermanentError):
        return await fail(msg, Failure(error, False, delivered, str(error)), report)
    if isinstance(error, TemporaryError):
        delay, what = error.delay, str(error)
        logger.warning("%s (delivery %d of %d); retrying in %.1f s", error, delivered, max_deliver, delay)
    elif isinstance(error, NatsError):  # NATS away or restarting: an outage to ride out, not a bug
        delay, what = _backoff(delivered, backoff_s), f"NATS unavailable ({type(error).__name__}: {error})"
        logger.warning(
            "handling %s: %s (delivery %d of %d); retrying in %.1f s", msg.subject, what, delivered, max_deliver, delay
        )
    else:
        delay, what = _backoff(delivered, backoff_s), f"{type(error).__name__}: {error}"
        logger.error("handling %s crashed (delivery %d of %d)", msg.subject, delivered, max_deliver, exc_info=error)
    if delivered >= max_deliver:
        reason = f"gave up after {delivered} deliveries: {what}"
        return await fail(msg, Failure(error, True, delivered, reason), report)
    await _quietly(msg.nak(delay=delay))
    return Settlement.retried


async def fail(msg: Msg, failure: Failure, report: FailureReporter) -> Settlement:
    """Report ``failure``, then ack; if the report cannot be published, nak so it is tried again."""
    try:
        await report(msg, failure)
    except Exception:  # the report is the record: without it the message must come back
        logger.exception("could not report the failure of %s; it will be redelivered", msg.subject)
        await _quietly(msg.nak(delay=_backoff(failure.deliveries)))
        return Settlement.retried
    await _quietly(msg.ack())
    return Settlement.failed


class Keepalive:
    """In-progress acks every third of ``ack_wait`` for every message a service holds.

    Without them JetStream would redeliver a message whose work outlasts ``ack_wait`` (a long
    generation, a transcription job) to another replica while this one is still on it.
    ``messages`` is asked afresh each round, so a held message that was replaced or settled is
    simply not in it any more.
    """

    def __init__(self, ack_wait_s: float, messages: Callable[[], Iterable[Msg]]) -> None:
        self.interval = max(MIN_KEEPALIVE_S, ack_wait_s / 3)
        self.messages = messages

    async def run(self) -> None:
        """Ping until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            for msg in list(self.messages()):
                await _quietly(msg.in_progress())


class InFlight:
    """Runs each admitted message in its own task, never more than ``concurrency`` at once.

    ``handle`` does the work and raises to fail; ``report`` publishes a failure (see
    :func:`settle`). Every message admitted is settled here.
    """

    def __init__(
        self,
        handle: Callable[[Msg], Awaitable[object]],
        *,
        report: FailureReporter,
        concurrency: int,
        ack_wait_s: float,
        max_deliver: int = MAX_DELIVER,
        backoff_s: float = CRASH_BACKOFF_S,
        name: str = "message",
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"{name} concurrency must be >= 1, got {concurrency}")
        self.handle = handle
        self.report = report
        self.concurrency = concurrency
        self.max_deliver = max_deliver
        self.backoff_s = backoff_s
        self.name = name
        self.running = 0
        self.peak = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[asyncio.Task[None], Msg] = {}
        self._keepalive = Keepalive(ack_wait_s, self._tasks.values)
        self._keepalive_task: asyncio.Task[None] | None = None
        self._closed = False

    async def admit(self, msg: Msg) -> None:
        """Start handling ``msg``; return once a slot is free for the next fetch."""
        if self._closed:  # fetched while shutting down: hand it straight back
            await hand_back(msg)
            return
        if self._keepalive_task is None:
            self._keepalive_task = asyncio.create_task(self._keepalive.run(), name=f"{self.name}-keepalive")
        # Free at once: the previous admit returned only when a slot was.
        await self._slots.acquire()
        task = asyncio.create_task(self._run(msg), name=f"{self.name}-{msg.subject}")
        self._tasks[task] = msg
        task.add_done_callback(self._tasks.pop)
        await self._slots.acquire()
        self._slots.release()

    async def aclose(self) -> None:
        """Stop every message in progress (each is handed back) and admit no more."""
        self._closed = True
        tasks = list(self._tasks)
        if self._keepalive_task is not None:
            tasks.append(self._keepalive_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, msg: Msg) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.handle(msg)
        except asyncio.CancelledError:
            await hand_back(msg)
            raise
        except Exception as exc:
            await settle(msg, exc, report=self.report, max_deliver=self.max_deliver, backoff_s=self.backoff_s)
        else:
            await ack(msg)
        finally:
            self.running -= 1
            self._slots.release()
