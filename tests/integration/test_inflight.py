"""The messaging boundary (services.common.inflight) against the real nats-server.

Each test gets a stream and a pull consumer of its own, publishes real messages, and reads
what JetStream did with them from the server: redeliveries, ``num_delivered``, ack-pending
counts. Times are only ever asserted as lower bounds (a nak delay JetStream must honour).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from services.common.errors import InvalidEventError, TemporaryError
from services.common.inflight import Failure, InFlight, Settlement, deliveries, settle

pytestmark = pytest.mark.nats


@dataclass
class Queue:
    """A stream with one subject and one durable pull consumer, both the test's own."""

    js: object
    stream: str
    subject: str
    durable: str
    sub: object = None

    async def publish(self, n: int = 1) -> None:
        for i in range(n):
            await self.js.publish(self.subject, f"message {i}".encode())  # type: ignore[attr-defined]

    async def fetch(self, timeout: float = 5.0) -> Msg:
        [msg] = await self.sub.fetch(1, timeout=timeout)  # type: ignore[attr-defined]
        return msg

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.sub.fetch(1, timeout=seconds)  # type: ignore[attr-defined]
        except NatsTimeoutError:
            return True
        return False

    async def info(self):
        return await self.js.consumer_info(self.stream, self.durable)  # type: ignore[attr-defined]

    async def settled(self, timeout: float = 10.0):
        """The consumer's info once nothing is unacked (an ack is fire-and-forget, so poll)."""
        deadline = time.monotonic() + timeout
        while (info := await self.info()).num_ack_pending:
            assert time.monotonic() < deadline, f"{info.num_ack_pending} message(s) never acked"
            await asyncio.sleep(0.05)
        return info


@dataclass
class Reports:
    """The service's failure reporter: records what it was asked to publish."""

    failures: list[Failure] = field(default_factory=list)
    fail_first: int = 0

    async def __call__(self, msg: Msg, failure: Failure) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("NATS is down, cannot publish the RecordingFailed")
        self.failures.append(failure)


@pytest_asyncio.fixture
async def make_queue(js) -> AsyncIterator[Callable]:
    made: list[Queue] = []

    async def make(*, ack_wait_s: float = 30.0, max_deliver: int = 5) -> Queue:
        name = f"INFLIGHT_{uuid.uuid4().hex[:8]}"
        subject = f"tests.inflight.{name}"
        await js.add_stream(StreamConfig(name=name, subjects=[subject]))
        queue = Queue(js, name, subject, "worker")
        made.append(queue)
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s, max_deliver=max_deliver)
        queue.sub = await js.pull_subscribe(subject, durable="worker", stream=name, config=config)
        return queue

    yield make
    for queue in made:
        await queue.sub.unsubscribe()  # type: ignore[attr-defined]
        await js.delete_stream(queue.stream)


async def test_handled_message_is_acked(make_queue) -> None:
    queue = await make_queue()
    await queue.publish()
    reports = Reports()
    assert await settle(await queue.fetch(), None, report=reports) is Settlement.acked
    info = await queue.settled()
    assert (info.num_redelivered, info.num_pending) == (0, 0)
    assert await queue.nothing_within(0.5) and reports.failures == []


async def test_permanent_error_is_reported_once_and_acked(make_queue) -> None:
    queue = await make_queue()
    await queue.publish()
    reports = Reports()
    error = InvalidEventError("invalid kubescribe.test.v1 event: field required")
    assert await settle(await queue.fetch(), error, report=reports) is Settlement.failed
    [failure] = reports.failures
    assert failure.error is error and failure.retryable is False and failure.deliveries == 1
    assert failure.reason == str(error)
    assert await queue.nothing_within(1.0), "a permanent failure must not come back"
    await queue.settled()


async def test_temporary_error_is_nakked_with_its_delay(make_queue) -> None:
    queue = await make_queue()
    await queue.publish()
    delay = 1.5
    nakked_at = time.monotonic()
    assert await settle(await queue.fetch(), TemporaryError("gateway busy", delay=delay), report=Reports()) is (
        Settlement.retried
    )
    again = await queue.fetch(timeout=10)
    assert time.monotonic() - nakked_at >= delay * 0.9, "redelivered before the error's delay"
    assert deliveries(again) == 2
    await settle(again, None, report=Reports())


async def test_temporary_error_short_delay_comes_back_sooner_than_a_long_one(make_queue) -> None:
    """The delay is the error's own: a short one is not stretched to some fixed backoff."""
    queue = await make_queue()
    await queue.publish()
    await settle(await queue.fetch(), TemporaryError("blip", delay=0.05), report=Reports())
    again = await queue.fetch(timeout=10)  # well before ack_wait (30 s) and the 2 s crash backoff
    assert deliveries(again) == 2
    await settle(again, None, report=Reports())


async def test_temporary_error_after_max_deliver_is_reported_retryable(make_queue) -> None:
    queue = await make_queue(max_deliver=3)
    await queue.publish()
    reports = Reports()
    settlements = []
    for _ in range(3):
        msg = await queue.fetch(timeout=10)
        settlements.append(await settle(msg, TemporaryError("still busy", delay=0.05), report=reports, max_deliver=3))
    assert settlements == [Settlement.retried, Settlement.retried, Settlement.failed]
    [failure] = reports.failures
    assert failure.retryable is True and failure.deliveries == 3
    assert "gave up after 3 deliveries" in failure.reason and "still busy" in failure.reason
    assert await queue.nothing_within(1.0)


async def test_crash_is_retried_with_backoff_then_reported(make_queue) -> None:
    queue = await make_queue(max_deliver=3)
    await queue.publish()
    reports = Reports()
    settlements = []
    for _ in range(3):
        msg = await queue.fetch(timeout=10)
        error = KeyError("a bug in the handler")
        settlements.append(await settle(msg, error, report=reports, max_deliver=3, backoff_s=0.05))
    assert settlements == [Settlement.retried, Settlement.retried, Settlement.failed]
    [failure] = reports.failures
    assert failure.retryable is True and failure.deliveries == 3
    assert "KeyError" in failure.reason and "a bug in the handler" in failure.reason
    await queue.settled()


async def test_unpublished_report_leaves_the_message_to_come_back(make_queue) -> None:
    queue = await make_queue()
    await queue.publish()
    reports = Reports(fail_first=1)
    error = InvalidEventError("invalid")
    assert await settle(await queue.fetch(), error, report=reports) is Settlement.retried
    again = await queue.fetch(timeout=10)  # nak'ed after 1 delivery: back within the 2 s backoff
    assert deliveries(again) == 2
    assert await settle(again, error, report=reports) is Settlement.failed
    assert len(reports.failures) == 1


async def _pump(queue: Queue, inflight: InFlight, stop: asyncio.Event) -> None:
    """What FastStream's PullSub(batch_size=1) does: fetch one, hand it over, fetch the next."""
    while not stop.is_set():
        try:
            msg = await queue.fetch(timeout=0.5)
        except NatsTimeoutError:
            continue
        await inflight.admit(msg)


async def test_inflight_fetches_only_when_a_slot_is_free(make_queue) -> None:
    queue = await make_queue()
    await queue.publish(5)
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handle(msg: Msg) -> None:
        await release.wait()
        handled.append(msg.data)

    inflight = InFlight(handle, report=Reports(), concurrency=2, ack_wait_s=30)
    stop = asyncio.Event()
    pump = asyncio.create_task(_pump(queue, inflight, stop))
    try:
        deadline = time.monotonic() + 10
        while inflight.running < 2:
            assert time.monotonic() < deadline, "two messages never started"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # room for a fetch the slots should not allow
        info = await queue.info()
        assert (info.num_ack_pending, info.num_pending) == (2, 3)
        release.set()
        deadline = time.monotonic() + 10
        while len(handled) < 5:
            assert time.monotonic() < deadline, f"only {len(handled)} of 5 handled"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await pump
        await inflight.aclose()
    assert inflight.peak == 2
    await queue.settled()


async def test_inflight_settles_from_the_exception(make_queue) -> None:
    queue = await make_queue(max_deliver=2)
    await queue.publish()
    reports = Reports()

    async def handle(msg: Msg) -> None:
        raise TemporaryError("gateway busy", delay=0.05)

    inflight = InFlight(handle, report=reports, concurrency=1, ack_wait_s=30, max_deliver=2)
    try:
        await inflight.admit(await queue.fetch())
        await inflight.admit(await queue.fetch(timeout=10))  # the nak'ed one, back after its delay
        deadline = time.monotonic() + 10
        while not reports.failures:
            assert time.monotonic() < deadline, "the second delivery was never reported"
            await asyncio.sleep(0.05)
    finally:
        await inflight.aclose()
    assert reports.failures[0].retryable and reports.failures[0].deliveries == 2


async def test_without_keepalive_a_slow_message_is_redelivered(make_queue) -> None:
    """The control for the next test: this consumer really does redeliver after ack_wait."""
    queue = await make_queue(ack_wait_s=1.0)
    await queue.publish()
    first = await queue.fetch()
    again = await queue.fetch(timeout=10)
    assert deliveries(first) == 1 and deliveries(again) == 2
    await settle(again, None, report=Reports())


async def test_keepalive_prevents_redelivery_of_a_slow_message(make_queue) -> None:
    queue = await make_queue(ack_wait_s=1.5)
    await queue.publish()
    seen: list[int] = []

    async def handle(msg: Msg) -> None:
        seen.append(deliveries(msg))
        await asyncio.sleep(4.0)  # more than two ack_waits

    inflight = InFlight(handle, report=Reports(), concurrency=1, ack_wait_s=1.5)
    try:
        # admit returns only once the one slot is free again: fetch beside it, as another replica would.
        admitting = asyncio.create_task(inflight.admit(await queue.fetch()))
        assert await queue.nothing_within(4.0), "redelivered although kept alive"
        await admitting
        info = await queue.settled()
    finally:
        await inflight.aclose()
    assert seen == [1] and info.num_redelivered == 0


async def test_shutdown_hands_messages_back_at_once(make_queue) -> None:
    queue = await make_queue(ack_wait_s=60)
    await queue.publish()
    started = asyncio.Event()

    async def handle(msg: Msg) -> None:
        started.set()
        await asyncio.Event().wait()  # a summary that would take forever

    inflight = InFlight(handle, report=Reports(), concurrency=1, ack_wait_s=60)
    # admit waits for a free slot, and the only one is busy until shutdown frees it.
    admitting = asyncio.create_task(inflight.admit(await queue.fetch()))
    await asyncio.wait_for(started.wait(), 5)
    await inflight.aclose()
    await asyncio.wait_for(admitting, 5)
    again = await queue.fetch(timeout=10)  # long before ack_wait (60 s)
    assert deliveries(again) == 2
    await inflight.admit(again)  # fetched while shutting down: handed straight back
    last = await queue.fetch(timeout=10)
    assert deliveries(last) == 3
    await settle(last, None, report=Reports())
