"""The cluster simulation end to end: kube-burner's rate, Pending pods and backoff, Kueue's quota,
DAS slices, and the real planner choosing the Jobs."""

from __future__ import annotations

from typing import Any

import pytest

from services.plan.calibration import Calibration
from services.plan.local import LocalSim
from services.plan.metrics import bootstrap, summarize
from services.plan.sim import ClusterSim, Recording
from services.plan.spec import ClusterSpec

QUIET = {"pod_create_s": 0.0, "pod_start_s": 0.0, "kueue_admit_s": 0.0, "model_load_s": 0.0,
         "audio_fetch_s": 0.0, "das_slice_s": 0.0, "download_mb_s": 1e9}  # fmt: skip


def _cal(**values: float) -> Calibration:
    calibration = Calibration.default()
    for key, value in {**QUIET, **values}.items():
        calibration = calibration.override(key, value, "test")
    return calibration


def _recordings(n: int, seconds: float, model: str = "medium", gap: float = 0.0) -> list[Recording]:
    return [Recording(f"r{i}", i * gap, seconds, model) for i in range(n)]


def _run(spec: dict[str, Any], recordings: list[Recording], **cal: float):
    return ClusterSim(ClusterSpec.model_validate(spec), _cal(**cal), recordings).run()


ONE_GPU = {"gpus": [{"type": "A100-40GB", "count": 1}]}


def test_kube_burner_creates_one_job_per_second() -> None:
    result = _run({"gpus": [{"type": "A100-40GB", "count": 8}]}, _recordings(5, 60.0))
    assert [round(j.created, 6) for j in result.jobs] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_pending_pod_waits_for_the_gpu_then_at_most_its_backoff() -> None:
    result = _run(ONE_GPU, _recordings(2, 100.0))
    first, second = sorted(result.jobs, key=lambda j: j.created)
    assert second.runs[0][2] >= first.finished
    assert second.runs[0][2] - first.finished <= 10.0  # podMaxBackoffSeconds


def test_kueue_holds_jobs_until_quota_frees() -> None:
    kueue = {"enabled": True, "cluster_queues": [{"name": "cq", "nominal_quota": {"gpu": 1}}],
             "local_queues": {"lq": "cq"}, "default_queue": "lq"}  # fmt: skip
    result = _run({"gpus": [{"type": "A100-40GB", "count": 4}], "kueue": kueue}, _recordings(3, 50.0))
    admitted = sorted(j.admitted for j in result.jobs)
    finished = sorted(j.finished for j in result.jobs)
    assert admitted[1] == finished[0] and admitted[2] == finished[1]


def test_das_slices_let_seven_jobs_share_one_gpu() -> None:
    das = {**ONE_GPU, "workload": {"das": True, "profiles": {"medium": "mig-1g.5gb"}}}
    sliced = summarize(_run(das, _recordings(7, 600.0)))
    whole = summarize(_run(ONE_GPU, _recordings(7, 600.0)))
    assert sliced["makespan_s"] < whole["makespan_s"]
    assert sliced["jct_mean_s"] < whole["jct_mean_s"]


def test_the_real_planner_packs_short_recordings_into_few_jobs() -> None:
    spec = {**ONE_GPU, "kubescribe": {"enabled": True}}
    packed = _run(spec, _recordings(20, 5.0, "tiny.en"))
    alone = _run(ONE_GPU, _recordings(20, 5.0, "tiny.en"))
    assert len(alone.jobs) == 20
    assert len(packed.jobs) < 5
    assert all(r.done is not None for r in packed.recordings)


def test_splitting_spreads_one_long_recording_over_gpus() -> None:
    spec = {"gpus": [{"type": "A100-40GB", "count": 4}], "kubescribe": {"enabled": True, "split_s": 600.0}}
    split = _run(spec, _recordings(1, 2400.0))
    whole = _run({**spec, "kubescribe": {"enabled": True}}, _recordings(1, 2400.0))
    assert len(split.jobs) == 4 and len({j.runs[0][0] for j in split.jobs}) == 4
    assert split.recordings[0].done < whole.recordings[0].done


def test_a_high_priority_job_preempts_a_low_one() -> None:
    kueue = {"enabled": True, "default_queue": "lq", "local_queues": {"lq": "cq"}, "priority_classes": {"high": 100},
             "cluster_queues": [{"name": "cq", "nominal_quota": {"gpu": 1},
                                 "preemption": {"within_cluster_queue": "LowerPriority"}}]}  # fmt: skip
    recordings = [Recording("low", 0.0, 600.0, "medium"), Recording("high", 10.0, 60.0, "medium", priority="high")]
    result = _run({**ONE_GPU, "kueue": kueue}, recordings)
    low = next(j for j in result.jobs if j.id == "job-low")
    high = next(r for r in result.recordings if r.id == "high")
    assert low.evictions == 1 and len(low.runs) == 2
    assert high.done < next(r for r in result.recordings if r.id == "low").done


def test_local_slots_run_jobs_in_parallel() -> None:
    calibration = _cal(**{"local.spawn_s": 1.0, "local.per_file_s": 0.5, "local.rtf": 0.1})
    one = summarize(LocalSim(calibration, _recordings(8, 10.0, "tiny.en"), slots=1).run())
    two = summarize(LocalSim(calibration, _recordings(8, 10.0, "tiny.en"), slots=2).run())
    assert two["makespan_s"] < one["makespan_s"]


def test_local_pipeline_terms_delay_the_start_and_hold_the_slot() -> None:
    """``local.dispatch_s`` moves a lone recording's start and end by itself; ``local.per_file_io_s``
    holds the slot after each recording, so a packed job of four ends four of them later."""
    engine = {"local.spawn_s": 1.0, "local.per_file_s": 0.5, "local.rtf": 0.1}
    base = LocalSim(_cal(**engine), _recordings(1, 10.0, "tiny.en"), slots=1).run().recordings[0]
    shifted = LocalSim(_cal(**engine, **{"local.dispatch_s": 0.3}), _recordings(1, 10.0, "tiny.en"), slots=1).run()
    shifted = shifted.recordings[0]
    assert shifted.started - base.started == pytest.approx(0.3) and shifted.done - base.done == pytest.approx(0.3)
    packed = _recordings(4, 2.0, "tiny.en")
    plain = summarize(LocalSim(_cal(**engine), packed, slots=1).run())
    with_io = summarize(LocalSim(_cal(**engine, **{"local.per_file_io_s": 0.05}), packed, slots=1).run())
    assert with_io["makespan_s"] - plain["makespan_s"] == pytest.approx(4 * 0.05)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_agreement() -> None:
    wide = bootstrap([1.0, 5.0, 9.0, 2.0, 8.0])
    narrow = bootstrap([5.0, 5.1, 4.9, 5.0, 5.0])
    assert wide["lo"] <= wide["mean"] <= wide["hi"]
    assert narrow["hi"] - narrow["lo"] < wide["hi"] - wide["lo"]


def test_control_plane_work_preempts_transcriptions_without_losing_core_time() -> None:
    """Core time the stack's services spend per recording delays the transcriptions still running
    by exactly that much on a one-core machine: preempted work resumes with what it had left."""
    engine = {"local.spawn_s": 1.0, "local.per_file_s": 0.5, "local.rtf": 0.1}
    plain = summarize(LocalSim(_cal(**engine), _recordings(4, 10.0, "tiny.en", gap=0.2), slots=1).run())
    busy = {**engine, "local.arrival_cpu_s": 0.05, "local.done_cpu_s": 0.1}
    loaded = summarize(LocalSim(_cal(**busy), _recordings(4, 10.0, "tiny.en", gap=0.2), slots=1).run())
    # Every arrival's 0.05 s and the first three recordings' 0.1 s land while the slot transcribes.
    assert loaded["makespan_s"] - plain["makespan_s"] == pytest.approx(4 * 0.05 + 3 * 0.1, abs=0.06)


def test_a_processes_first_transcription_is_charged_once_per_job() -> None:
    engine = {"local.spawn_s": 1.0, "local.per_file_s": 0.5, "local.rtf": 0.1}
    first = {**engine, "local.first_file_s": 0.2}
    packed = summarize(LocalSim(_cal(**engine), _recordings(4, 2.0, "tiny.en"), slots=1).run())
    packed_first = summarize(LocalSim(_cal(**first), _recordings(4, 2.0, "tiny.en"), slots=1).run())
    assert packed_first["makespan_s"] - packed["makespan_s"] == pytest.approx(0.2)  # one job: one first
    lone = summarize(LocalSim(_cal(**engine), _recordings(3, 2.0, "tiny.en", gap=10.0), slots=1).run())
    lone_first = summarize(LocalSim(_cal(**first), _recordings(3, 2.0, "tiny.en", gap=10.0), slots=1).run())
    assert lone_first["jct_mean_s"] - lone["jct_mean_s"] == pytest.approx(0.2)  # a job, so a first, each


def test_the_next_transcriber_starts_once_the_last_has_exited() -> None:
    engine = {"local.spawn_s": 1.0, "local.per_file_s": 0.5, "local.rtf": 0.1}
    two = _recordings(2, 2.0, "tiny.en", gap=1.0)  # the second arrives while the first's job runs
    plain = LocalSim(_cal(**engine), two, slots=1).run().recordings[1]
    slow = LocalSim(_cal(**engine, **{"local.exit_s": 0.4}), _recordings(2, 2.0, "tiny.en", gap=1.0), slots=1)
    assert slow.run().recordings[1].started - plain.started == pytest.approx(0.4)
