"""The job planner is pure: recordings and a clock in, jobs out."""

from __future__ import annotations

import itertools

import pytest

from services.common.events import AudioReceived, ObjectRef, Priority
from services.common.ids import new_id
from services.common.settings import DispatcherSettings
from services.dispatcher.domain import JobRecording
from services.dispatcher.planner import Pending, Planner


def settings(**overrides: object) -> DispatcherSettings:
    options: dict = {"target_job_audio_s": 60.0, "max_linger_s": 0.5, "max_job_recordings": 16}
    options.update(overrides)
    return DispatcherSettings(**options)


def pending(
    duration: float | None,
    *,
    at: float = 0.0,
    priority: Priority = Priority.normal,
    model: str = "tiny.en",
    tenant: str = "default",
    size: int | None = None,
) -> Pending:
    recording = JobRecording(
        recording_id=new_id(),
        audio=ObjectRef(bucket="audio", name="x", size=size),
        duration_s=duration,
        priority=priority,
        tenant=tenant,
    )
    return Pending(recording, model, arrived=at)


def test_short_recordings_wait_for_company_until_the_linger_ends() -> None:
    planner = Planner(settings())
    for _ in range(3):
        planner.add(pending(5.0))
    assert planner.plan(now=0.1) == []
    assert planner.next_deadline(0.1) == pytest.approx(0.5)
    jobs = planner.plan(now=0.6)
    assert [len(j.recordings) for j in jobs] == [3]
    assert len(planner) == 0


def test_a_full_job_leaves_at_once_and_the_rest_lingers() -> None:
    planner = Planner(settings())
    for _ in range(15):
        planner.add(pending(5.0))  # 75 s of audio: one 60 s job, 15 s left over
    jobs = planner.plan(now=0.0)
    assert [j.audio_s for j in jobs] == [60.0]
    assert len(planner) == 3


def test_the_recording_cap_bounds_a_job() -> None:
    planner = Planner(settings(max_job_recordings=4))
    for _ in range(10):
        planner.add(pending(1.0))
    assert [len(j.recordings) for j in planner.plan(now=0.0)] == [4, 4]
    assert [len(j.recordings) for j in planner.plan(now=1.0)] == [2]


def test_long_recordings_go_alone_without_lingering() -> None:
    planner = Planner(settings())
    long = pending(200.0)  # longer than a job, shorter than split_threshold_s
    planner.add(long)
    planner.add(pending(5.0))
    jobs = planner.plan(now=0.0)
    assert [[r.recording_id for r in j.recordings] for j in jobs] == [[long.recording.recording_id]]


def test_higher_priority_is_planned_first() -> None:
    planner = Planner(settings(max_job_recordings=2))
    low = [pending(1.0, priority=Priority.low) for _ in range(2)]
    high = [pending(1.0, priority=Priority.high) for _ in range(2)]
    for item in [*low, *high]:
        planner.add(item)
    jobs = planner.plan(now=0.0)
    assert jobs[0].priority is Priority.high
    assert {r.recording_id for r in jobs[0].recordings} == {p.recording.recording_id for p in high}


def test_a_linger_flush_fills_the_free_slots_evenly() -> None:
    planner = Planner(settings())
    for duration in (9.0, 8.0, 5.0, 4.0, 2.0, 2.0):
        planner.add(pending(duration))
    jobs = planner.plan(now=1.0, free_slots=2)
    assert sorted(j.audio_s for j in jobs) == [15.0, 15.0]


def test_jobs_hold_one_model_and_one_tenant() -> None:
    planner = Planner(settings())
    planner.add(pending(5.0, model="tiny.en"))
    planner.add(pending(5.0, model="medium"))
    planner.add(pending(5.0, tenant="acme"))
    jobs = planner.plan(now=1.0)
    assert sorted((j.model, j.tenant, j.profile) for j in jobs) == [
        ("medium", "default", "mig-3g.20gb"),
        ("tiny.en", "acme", "mig-1g.5gb"),
        ("tiny.en", "default", "mig-1g.5gb"),
    ]


def test_model_comes_from_the_event_then_the_tenant_then_the_default() -> None:
    planner = Planner(settings(tenant_models={"acme": "small.en"}))

    def event(**fields: object) -> AudioReceived:
        return AudioReceived(source="t", recording_id=new_id(), audio=ObjectRef(bucket="audio", name="x"), **fields)

    assert planner.model_for(event()) == "tiny.en"
    assert planner.model_for(event(tenant="acme")) == "small.en"
    assert planner.model_for(event(tenant="acme", model="large-v3")) == "large-v3"
    assert planner.profile_for("small.en") == "mig-2g.10gb"


def test_backoff_holds_a_retry_back() -> None:
    planner = Planner(settings())
    item = pending(5.0)
    item.not_before, item.attempt = 3.0, 2
    planner.add(item)
    assert planner.plan(now=1.0) == []
    jobs = planner.plan(now=3.0)
    assert len(jobs) == 1 and jobs[0].attempt == 2


def test_unknown_duration_is_estimated_from_the_size() -> None:
    planner = Planner(settings())
    planner.add(pending(None, size=32000 * 100))  # ~100 s of 16 kHz PCM: a job of its own
    assert len(planner.plan(now=0.0)) == 1


def test_a_burst_smaller_than_the_free_slots_is_spread_evenly() -> None:
    """24 short clips and 2 free slots: not one full job of 16 and a straggler of 8, but 12 + 12."""
    planner = Planner(settings(target_job_audio_s=120.0, max_job_recordings=16))
    for i in range(24):
        planner.add(pending(3.0 + (i % 3)))
    assert planner.plan(now=0.0, free_slots=2) == []
    jobs = planner.plan(now=0.15, free_slots=2)  # arrivals stopped: no need to wait out the linger
    assert sorted(len(j.recordings) for j in jobs) == [12, 12]


def test_with_every_slot_busy_a_quiet_burst_still_lingers_for_company() -> None:
    planner = Planner(settings())
    planner.add(pending(5.0))
    assert planner.plan(now=0.2, free_slots=0) == []
    assert len(planner.plan(now=0.6, free_slots=0)) == 1


def test_enough_full_jobs_for_every_slot_leave_without_lingering() -> None:
    planner = Planner(settings(target_job_audio_s=10.0))
    for _ in range(10):
        planner.add(pending(5.0))
    assert [j.audio_s for j in planner.plan(now=0.0, free_slots=2)] == [10.0] * 5


# --- splitting long recordings -------------------------------------------------------------------
def test_a_recording_over_the_threshold_is_split_over_the_free_slots_at_once() -> None:
    planner = Planner(settings(split_threshold_s=300.0, split_overlap_s=2.0))
    long = pending(600.0)
    planner.add(long)
    jobs = planner.plan(now=0.0, free_slots=2)
    assert [len(j.recordings) for j in jobs] == [1, 1]
    chunks = [j.recordings[0].chunk for j in jobs]
    assert all(j.recordings[0].recording_id == long.recording.recording_id for j in jobs)
    assert [(c.index, c.count, c.start_s, c.end_s, c.overlap_s) for c in chunks] == [
        (0, 2, 0.0, 300.0, 2.0),
        (1, 2, 300.0, 600.0, 2.0),
    ]
    assert [j.audio_s for j in jobs] == [300.0, 300.0]
    assert len(planner) == 0


def test_a_recording_at_the_threshold_stays_whole() -> None:
    planner = Planner(settings(split_threshold_s=300.0))
    planner.add(pending(300.0))
    jobs = planner.plan(now=0.0, free_slots=4)
    assert [j.recordings[0].chunk for j in jobs] == [None]


def test_no_free_slot_splits_into_the_maximum_and_no_chunk_is_shorter_than_the_minimum() -> None:
    from services.dispatcher.splitting import chunk_count

    config = settings(split_threshold_s=300.0, split_max_chunks=8, split_min_chunk_s=60.0)
    assert chunk_count(3600.0, 0, config) == 8
    assert chunk_count(3600.0, None, config) == 8
    assert chunk_count(3600.0, 3, config) == 3
    assert chunk_count(330.0, 8, config) == 5  # 5 x 66 s: a sixth would be shorter than 60 s
    assert chunk_count(3600.0, 1, config) == 1  # one free slot: nothing to spread over
    assert chunk_count(3600.0, 4, settings(split_threshold_s=0)) == 1  # 0 disables splitting


def test_split_plan_is_pure_and_tiles_the_recording() -> None:
    from services.dispatcher.splitting import split_plan

    config = settings(split_threshold_s=300.0)
    plan = split_plan(1000.0, 3, config)
    assert plan == split_plan(1000.0, 3, config)
    assert plan[0].start_s == 0.0 and plan[-1].end_s == 1000.0
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(plan))
    assert split_plan(200.0, 3, config) == []


def test_two_long_recordings_share_the_free_slots() -> None:
    planner = Planner(settings(split_threshold_s=300.0, split_max_chunks=4))
    first, second = pending(600.0), pending(600.0)
    planner.add(first)
    planner.add(second)
    jobs = planner.plan(now=0.0, free_slots=2)
    by_recording: dict[str, int] = {}
    for job in jobs:
        rid = job.recordings[0].recording_id
        by_recording[rid] = by_recording.get(rid, 0) + 1
    # the first takes both free slots; nothing is free for the second, so it spreads over the maximum
    assert by_recording == {first.recording.recording_id: 2, second.recording.recording_id: 4}


def test_a_retried_chunkless_recording_is_split_again_and_a_chunk_is_never_split() -> None:
    planner = Planner(settings(split_threshold_s=300.0))
    chunked = pending(600.0)
    planner.add(chunked)
    chunk = planner.plan(now=0.0, free_slots=2)[0].recordings[0]
    again = Pending(chunk, "tiny.en", arrived=1.0)
    planner.add(again)
    jobs = planner.plan(now=1.0, free_slots=4)
    assert [j.recordings[0].chunk for j in jobs] == [chunk.chunk]
