"""Replay over direct NATS publishing, with outcome collection, against the real nats-server.

No pipeline runs on the session server, so the test plays the pipeline's part itself: it
consumes the AudioReceived events, advances the recordings' statuses through the stages and
publishes SummaryReady or a failure, exactly as the services record them. This exercises the
collector (streams + KV) without the whole stack; ``test_replay_stack.py`` runs the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
import pytest_asyncio
from nats.js.api import DeliverPolicy

from loadgen.make import make_trace
from loadgen.replay import NatsTarget, ReplayOptions, replay
from loadgen.report import job_completion_time, summarize
from services.common.events import AudioReceived, ObjectRef, Stage, SummaryReady, parse_event
from services.common.messaging import publish_event, report_failure
from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.common.status import RecordingStage, StatusStore
from services.common.topology import AUDIO_RECEIVED, AUDIO_STREAM, ensure_topology
from services.runtime.nats_server import EmbeddedNatsServer

pytestmark = pytest.mark.nats


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A nats-server of our own: a dispatcher left running on the session server by another
    test must not pick up these recordings."""
    store = tmp_path_factory.mktemp("loadgen-nats")
    with EmbeddedNatsServer(store, log_file=store / "nats.log") as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def js(own_server):
    client = await connect(NatsSettings(url=own_server.url), name="loadgen-tests")
    context = client.jetstream()
    await ensure_topology(context)
    yield context
    await client.drain()


@contextlib.asynccontextmanager
async def pipeline_stand_in(js, *, doomed_tenant: str):
    """Advances every loadgen recording through the stages; fails those of ``doomed_tenant``."""
    store = await StatusStore.open(js)
    rng = random.Random(5)
    tasks: set[asyncio.Task] = set()

    async def work(event: AudioReceived) -> None:
        rid = event.recording_id
        for stage in (RecordingStage.queued, RecordingStage.dispatched, RecordingStage.running):
            await asyncio.sleep(rng.uniform(0.01, 0.05))
            await store.advance(rid, stage)
        if event.tenant == doomed_tenant:
            await report_failure(
                js, stage=Stage.transcribe, reason="no speech found", retryable=False, source="test", recording_id=rid
            )
            return
        for stage in (RecordingStage.transcribed, RecordingStage.summarizing):
            await asyncio.sleep(rng.uniform(0.01, 0.05))
            await store.advance(rid, stage)
        await asyncio.sleep(rng.uniform(0.01, 0.05))
        await store.advance(rid, RecordingStage.summarized, metrics={"ttft_s": 0.123})
        ref = ObjectRef(bucket="summaries", name=rid)
        await publish_event(
            js,
            SummaryReady(
                source="test",
                recording_id=rid,
                summary=ref,
                model="sim",
                ttft_s=0.123,
                generation_s=0.5,
                tokens_in=10,
                tokens_out=20,
            ),
        )

    async def on_event(msg) -> None:
        event = parse_event(AudioReceived, msg.data)
        if event.source == "kubescribe/loadgen":
            task = asyncio.create_task(work(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    sub = await js.subscribe(
        AUDIO_RECEIVED, stream=AUDIO_STREAM, cb=on_event, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    try:
        yield
    finally:
        await sub.unsubscribe()
        for task in tasks:
            task.cancel()


async def test_direct_replay_collects_every_outcome_from_the_system(js, tmp_path):
    items = make_trace(
        12, pattern="poisson", rate=20, seed=4, audio="tone", duration_s=0.3, tenants=["acme"] * 11 + ["doomed"]
    )
    async with pipeline_stand_in(js, doomed_tenant="doomed"):
        run = await replay(
            items, NatsTarget(js), js=js, options=ReplayOptions(name="direct", deadline_s=30, cache_dir=tmp_path)
        )

    assert run.footer.stopped == "completed"
    outcomes = {r.id: r.outcome for r in run.items}
    doomed = next(r for r in run.items if r.tenant == "doomed")
    assert outcomes[doomed.id] == "failed" and doomed.error == "no speech found" and doomed.error_stage == "transcribe"
    assert sum(o == "summarized" for o in outcomes.values()) == 11

    store = await StatusStore.open(js)
    for result in run.items:
        status = await store.get(result.recording_id)
        assert status is not None
        # The results carry the recording's own timestamps, and the JCT is computed from them.
        assert result.timestamps == status.timestamps
        if result.outcome == "summarized":
            expected = (status.timestamps["summarized"] - status.timestamps["received"]).total_seconds()
            assert job_completion_time(result) == pytest.approx(expected)
            assert result.metrics["ttft_s"] == pytest.approx(0.123)
            assert result.audio_s == pytest.approx(0.3, abs=0.01)
        assert result.accepted_s >= result.sent_s >= result.scheduled_s

    summary = summarize(run)
    assert summary["completed"] == 11 and summary["failed"] == 1
    assert summary["ttft_s"]["p50"] == pytest.approx(0.123)


async def test_deadline_marks_unfinished_recordings_as_timeouts(js, tmp_path):
    items = make_trace(2, pattern="burst", audio="tone", duration_s=0.2)
    run = await replay(items, NatsTarget(js), js=js, options=ReplayOptions(deadline_s=1.0, cache_dir=tmp_path))
    assert run.footer.stopped == "deadline"
    assert [r.outcome for r in run.items] == ["timeout", "timeout"]
    # The final status read still copies what the system recorded.
    assert all("received" in r.timestamps for r in run.items)
