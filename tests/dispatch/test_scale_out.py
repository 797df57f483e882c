"""Dispatchers in replicas on one durable: work is spread, and each holds no more than its bound.

Real nats-server, real dispatcher apps (two in one process, as two pods would run), the fake
backend with the real transcriber in-process. Each replica has its own fake cluster, the way each
local dispatcher has its own slots.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.broker import run_until_cancelled
from services.common.settings import Settings
from services.common.topology import AUDIO_STREAM
from services.dispatcher.app import FETCH_BATCH, build_app
from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend, FakeRun, transcriber_runner
from services.dispatcher.consumer import Dispatcher
from services.dispatcher.handlers import DISPATCHER
from services.dispatcher.holding import hold_limit
from tests.integration._dispatch import (
    ReadyCounter,
    make_settings,
    publish_clip,
    synthesize_clips,
    unique_durable,
    wait_for,
    wait_outcomes,
)

pytestmark = [pytest.mark.nats, pytest.mark.whisper, pytest.mark.slow]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    return synthesize_clips(tmp_path_factory.mktemp("scale-clips"), count=4)


@contextlib.asynccontextmanager
async def replica(settings: Settings, cluster: FakeCluster, durable: str) -> AsyncIterator[Dispatcher]:
    """One dispatcher replica on ``durable``; yields its :class:`Dispatcher` once it consumes."""
    app = build_app(settings, backend=FakeJobBackend(cluster=cluster), durable=durable, deliver_new=True)
    ready = asyncio.Event()
    task = asyncio.create_task(run_until_cancelled(app, ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield app.context.get(DISPATCHER)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _recordings(cluster: FakeCluster) -> int:
    return sum(len(run.job.recordings) for run in cluster.runs.values())


async def test_two_replicas_share_a_steady_replay(js, nats_settings, clips, whisper_engine) -> None:
    settings = make_settings(nats_settings, slots=1, max_job_recordings=2, target_job_audio_s=4.0, max_linger_s=0.2)
    durable = unique_durable()
    clusters = [FakeCluster(slots=1, runner=transcriber_runner(js, whisper_engine)) for _ in range(2)]
    counter = ReadyCounter()
    await counter.start(js)
    try:
        async with replica(settings, clusters[0], durable), replica(settings, clusters[1], durable):
            ids = []
            for i in range(16):  # steady: one upload every 0.2 s, faster than one replica transcribes
                ids.append((await publish_clip(js, clips[i % len(clips)][0])).recording_id)
                await asyncio.sleep(0.2)
            statuses = await wait_outcomes(js, ids, timeout=240)
            await wait_for(lambda: all(counter.counts.get(r) for r in ids), "every TranscriptReady", timeout=15)
            await asyncio.sleep(0.5)  # a duplicate would show up now
    finally:
        await counter.stop()
        for cluster in clusters:
            await cluster.aclose()
    assert {s.stage.value for s in statuses.values()} == {"transcribed"}
    assert all(counter.counts[r] == 1 for r in ids), counter.counts
    shares = [_recordings(cluster) for cluster in clusters]
    assert sum(shares) >= len(ids)
    assert min(shares) >= 0.3 * sum(shares), f"recordings transcribed per replica: {shares}"


async def test_a_replica_holds_no_more_than_its_bound(js, nats_settings, clips, whisper_engine) -> None:
    """Held recordings never exceed ``max_held``; the ones waiting for room are kept alive (no
    redelivery), and once jobs finish every recording is transcribed exactly once."""
    settings = make_settings(
        nats_settings, slots=1, max_job_recordings=1, max_held=3, ack_wait_s=2.0, target_job_audio_s=1.0
    )
    durable = unique_durable()
    release = asyncio.Event()

    async def held_back(run: FakeRun) -> None:
        await release.wait()
        await run.start()
        await run.transcribe()

    cluster = FakeCluster(held_back, slots=1, runner=transcriber_runner(js, whisper_engine))
    assert hold_limit(settings.dispatcher, FakeJobBackend(cluster=cluster)) == 3
    counter = ReadyCounter()
    await counter.start(js)
    try:
        async with replica(settings, cluster, durable) as dispatcher:
            ids = [(await publish_clip(js, clips[i % len(clips)][0])).recording_id for i in range(10)]
            await wait_for(lambda: len(dispatcher.held) == 3, "the replica to hold its bound", timeout=20)
            await asyncio.sleep(5.0)  # more than two ack_waits: a waiting message would be redelivered
            info = await js.consumer_info(AUDIO_STREAM, durable)
            assert len(dispatcher.held) == 3 and dispatcher.room.peak == 3
            assert info.num_redelivered == 0, "a message waiting for room was redelivered"
            assert info.num_ack_pending <= 3 + FETCH_BATCH
            release.set()
            statuses = await wait_outcomes(js, ids, timeout=240)
            await wait_for(lambda: all(counter.counts.get(r) for r in ids), "every TranscriptReady", timeout=15)
            assert dispatcher.room.peak == 3
    finally:
        await counter.stop()
        await cluster.aclose()
    assert {s.stage.value for s in statuses.values()} == {"transcribed"}
    assert all(counter.counts[r] == 1 for r in ids)


def test_hold_limit_is_sized_from_the_backend() -> None:
    settings = Settings().dispatcher.model_copy(update={"max_job_recordings": 16})
    assert hold_limit(settings, FakeJobBackend(cluster=FakeCluster(slots=2))) == 64
    assert hold_limit(settings, FakeJobBackend(cluster=FakeCluster(slots=None))) == 1024
    assert hold_limit(settings.model_copy(update={"max_held": 7}), FakeJobBackend(cluster=FakeCluster(slots=2))) == 7
