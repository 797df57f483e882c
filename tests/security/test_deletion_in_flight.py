"""A recording deleted while the summarizer waits on the LLM is dropped: nothing is written afterwards.

The real summarizer service, the LLM simulator with a slow first token, a real nats-server;
the delete happens while the request is in flight.
"""

from __future__ import annotations

import asyncio

import pytest

from services.common.events import ObjectRef
from services.common.status import RecordingStage, StatusStore
from services.common.storage import object_exists
from services.common.topology import IDEMPOTENCY_BUCKET, SUMMARIES_BUCKET
from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend
from services.ingest.deletion import delete_recording
from services.ingest.idempotency import IdempotencyClaims
from services.runtime.sim import SimConfig, SimLlmServer
from tests.integration._dispatch import announce, make_settings, prepare_clip, running_dispatcher, unique_durable
from tests.integration.test_summarizer_service import _settings, _submit, running
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.nats

TTFT_S = 1.5


async def _drained(sub, idle_s: float = 0.2) -> list[bytes]:
    """Every message the subscription holds now (until it is quiet for ``idle_s``)."""
    data = []
    while True:
        try:
            data.append((await sub.next_msg(timeout=idle_s)).data)
        except TimeoutError:
            return data


async def test_delete_during_summarization_writes_nothing_afterwards(js, nats_settings) -> None:
    store = await StatusStore.open(js)
    claims = IdempotencyClaims(await js.key_value(IDEMPOTENCY_BUCKET), store)
    with SimLlmServer(SimConfig(model="m", ttft=TTFT_S)) as sim:
        sub = await js.subscribe("kubescribe.summary.ready")
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js)
            for _ in range(100):  # until the summarizer has picked it up
                status = await store.get(recording_id)
                if status is not None and status.stage is RecordingStage.summarizing:
                    break
                await asyncio.sleep(0.02)
            assert status is not None and status.stage is RecordingStage.summarizing
            await delete_recording(js, store, claims, recording_id, tenant=status.tenant)
            await asyncio.sleep(TTFT_S + 2.0)  # the LLM answers; the summarizer must drop it

            assert await store.get(recording_id) is None, "the status was written back after the delete"
            assert not await object_exists(js, ObjectRef(bucket=SUMMARIES_BUCKET, name=recording_id))
            announced = [recording_id.encode() in data for data in await _drained(sub)]
            assert not any(announced), "SummaryReady was published for a deleted recording"
        await sub.unsubscribe()


async def test_a_recording_deleted_before_dispatch_gets_no_job_and_no_failure(js, nats_settings, tmp_path) -> None:
    """Deleted between its upload and the dispatcher taking it: its audio is gone, so without the
    tombstone check the dispatcher reported a "missing audio object" failure and recreated a status."""
    store = await StatusStore.open(js)
    claims = IdempotencyClaims(await js.key_value(IDEMPOTENCY_BUCKET), store)
    event = await prepare_clip(js, synthesize(SENTENCES[1], tmp_path / "clip.wav"))
    await delete_recording(js, store, claims, event.recording_id, tenant=event.tenant)
    failures = await js.subscribe("kubescribe.*.failed")
    cluster = FakeCluster()
    async with running_dispatcher(make_settings(nats_settings), FakeJobBackend(cluster=cluster), unique_durable()):
        await announce(js, event)
        kept = await prepare_clip(js, synthesize(SENTENCES[2], tmp_path / "kept.wav"))
        await announce(js, kept)  # after the deleted one: once it is planned, the deleted one was seen
        for _ in range(200):
            if any(kept.recording_id in (r.recording_id for r in run.job.recordings) for run in cluster.runs.values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the recording after the deleted one was never planned")
    planned = {r.recording_id for run in cluster.runs.values() for r in run.job.recordings}
    assert event.recording_id not in planned
    assert await store.get(event.recording_id) is None, "the dispatcher recreated the deleted recording's status"
    reported = await _drained(failures, idle_s=0.3)
    assert not any(event.recording_id.encode() in data for data in reported), "a failure was reported"
    await failures.unsubscribe()
    await cluster.aclose()
