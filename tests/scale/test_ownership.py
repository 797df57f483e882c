"""The dispatch fence (:mod:`services.dispatcher.ownership`): a replica that lost a recording to
another (it was cut off past ``ack_wait``, the message was redelivered and re-dispatched) must
not submit a second Job for it. Real nats-server, status KV and dispatcher service; the fake
backend records what would have been submitted."""

from __future__ import annotations

import asyncio

import pytest

from services.common.status import StatusStore
from services.common.topology import AUDIO_STREAM
from services.dispatcher.backends.fake import FakeJobBackend
from services.dispatcher.ownership import NotOwnerError, claim
from tests.integration._dispatch import (
    delete_consumer,
    make_settings,
    publish_clip,
    running_dispatcher,
    synthesize_clips,
    unique_durable,
    wait_for,
)

pytestmark = [pytest.mark.nats]


async def test_two_claims_from_the_same_job_one_wins(js, nats_settings) -> None:
    store = await StatusStore.open(js)
    rid = f"fence-{unique_durable()}"
    await store.update(rid, lambda s: claim(s, None, "job-1", 1))
    results = await asyncio.gather(
        store.update(rid, lambda s: claim(s, "job-1", "job-a", 2)),
        store.update(rid, lambda s: claim(s, "job-1", "job-b", 2)),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NotOwnerError", "RecordingStatus"], results
    winner = next(r for r in results if not isinstance(r, Exception))
    assert (await store.get(rid)).job_id == winner.job_id in ("job-a", "job-b")
    with pytest.raises(NotOwnerError):  # and nobody dispatches over an outcome
        await store.update(rid, lambda s: claim(s.advance(s.stage.transcribed), winner.job_id, "job-c", 3))


async def test_a_replica_whose_recording_was_dispatched_by_another_submits_no_job(js, nats_settings, tmp_path) -> None:
    clip = synthesize_clips(tmp_path, count=1)[0][0]
    settings = make_settings(nats_settings, target_job_audio_s=600.0, max_linger_s=3.0, slots=1, ack_wait_s=30.0)
    durable = unique_durable()
    backend = FakeJobBackend(slots=1)
    store = await StatusStore.open(js)
    try:
        async with running_dispatcher(settings, backend, durable):
            event = await publish_clip(js, clip)
            rid = event.recording_id

            async def queued() -> bool:
                status = await store.get(rid)
                return status is not None and status.stage.value == "queued"

            await wait_for(queued, "the recording accepted and lingering", timeout=20)
            # Meanwhile another replica (holding a later delivery) dispatched it to its own job.
            await store.update(rid, lambda s: claim(s, None, "other-replicas-job", 1))
            await asyncio.sleep(settings.dispatcher.max_linger_s + 2)  # our planner's turn came and went
            info = await js.consumer_info(AUDIO_STREAM, durable)
    finally:
        await delete_consumer(js, durable)
    assert backend.cluster.runs == {}, "no second Job for a recording another replica dispatched"
    status = await store.get(rid)
    assert status.job_id == "other-replicas-job" and status.attempts == 1
    assert info.num_ack_pending == 1, "dropped unsettled: the message lease decides who finishes it"
