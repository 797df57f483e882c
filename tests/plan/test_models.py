"""The pure pieces of the planner: MIG geometry, kube-scheduler's queue, Kueue admission, calibration."""

from __future__ import annotations

import pytest

from services.plan.calibration import DEFAULTS, Calibration, parse_sweep
from services.plan.errors import CalibrationError
from services.plan.gpus import GEOMETRIES, WHOLE, Gpu
from services.plan.kueue import Admission, Workload
from services.plan.scheduler import QueuedPod, SchedulingQueue
from services.plan.spec import ClusterQueue, KueueSpec, Preemption, SchedulerSpec


class TestMig:
    def test_a100_takes_seven_small_slices_and_no_eighth(self) -> None:
        gpu = Gpu("g", "A100-40GB", "n")
        for i in range(7):
            assert gpu.fits("mig-1g.5gb")
            gpu.take(f"p{i}", "mig-1g.5gb")
        assert not gpu.fits("mig-1g.5gb")

    def test_two_3g_slices_use_all_memory(self) -> None:
        gpu = Gpu("g", "A100-40GB", "n")
        gpu.take("a", "mig-3g.20gb")
        gpu.take("b", "mig-3g.20gb")
        assert not gpu.fits("mig-1g.5gb")  # 8 of 8 memory slices taken, 1 compute slice left
        gpu.release("a")
        assert gpu.fits("mig-1g.5gb")

    def test_whole_gpu_excludes_slices(self) -> None:
        gpu = Gpu("g", "H100-80GB", "n")
        gpu.take("w", WHOLE)
        assert not gpu.fits("mig-1g.10gb")
        gpu.release("w")
        gpu.take("s", "mig-1g.10gb")
        assert not gpu.fits(WHOLE)

    def test_a_profile_named_for_another_gpu_maps_to_the_same_shape(self) -> None:
        gpu = Gpu("g", "H100-80GB", "n")
        for i in range(7):
            gpu.take(f"p{i}", "mig-1g.5gb")  # the A100 name: an H100 1g.10gb
        assert not gpu.fits("mig-1g.10gb")
        assert gpu.counts == {"mig-1g.5gb": 7}

    @pytest.mark.parametrize("gpu_type", sorted(GEOMETRIES))
    def test_every_geometry_has_seven_one_g_slices(self, gpu_type: str) -> None:
        smallest = min(GEOMETRIES[gpu_type].values(), key=lambda p: (p.compute, p.memory))
        assert (smallest.compute, smallest.memory, smallest.max) == (1, 1, 7)


class TestSchedulingQueue:
    def test_backoff_doubles_up_to_the_cap(self) -> None:
        queue = SchedulingQueue(SchedulerSpec())
        pod = QueuedPod("p", 0, 0.0)
        delays = []
        for _ in range(6):
            queue.failed(pod, 100.0)
            delays.append(pod.backoff_until - 100.0)
        assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

    def test_freed_resources_requeue_but_respect_backoff(self) -> None:
        queue = SchedulingQueue(SchedulerSpec())
        pod = QueuedPod("p", 0, 0.0)
        queue.failed(pod, 0.0)
        queue.failed(pod, 0.0)  # backoff 2 s
        queue.on_resources_freed(1.0)
        assert queue.pop_ready(1.0) == []
        assert queue.next_timer() == 2.0
        assert [p.key for p in queue.pop_ready(2.0)] == ["p"]

    def test_without_events_only_the_flush_brings_a_pod_back(self) -> None:
        queue = SchedulingQueue(SchedulerSpec(requeue_on_completion=False))
        queue.failed(QueuedPod("p", 0, 0.0), 0.0)
        queue.on_resources_freed(50.0)
        queue.flush(200.0)
        assert queue.pop_ready(200.0) == []
        queue.flush(300.0)
        assert [p.key for p in queue.pop_ready(300.0)] == ["p"]

    def test_priority_then_age(self) -> None:
        queue = SchedulingQueue(SchedulerSpec())
        for key, priority, at in [("old-low", 0, 0.0), ("new-high", 10, 5.0), ("new-low", 0, 5.0)]:
            queue.add(QueuedPod(key, priority, at))
        assert [p.key for p in queue.pop_ready(6.0)] == ["new-high", "old-low", "new-low"]


def _admission(*queues: ClusterQueue) -> Admission:
    return Admission(KueueSpec(cluster_queues=list(queues), local_queues={q.name: q.name for q in queues}))


def _w(name: str, queue: str, *, at: float, amount: float = 1.0, priority: int = 0) -> Workload:
    return Workload(name, queue, "gpu", priority, at, amount)


class TestKueue:
    def test_quota_bounds_admission_and_a_finish_frees_it(self) -> None:
        kueue = _admission(ClusterQueue(name="cq", nominal_quota={"gpu": 2}))
        for i in range(3):
            kueue.submit(_w(f"w{i}", "cq", at=i))
        admitted, _ = kueue.cycle(0.0)
        assert [w.id for w in admitted] == ["w0", "w1"]
        kueue.finish("w0")
        assert [w.id for w in kueue.cycle(1.0)[0]] == ["w2"]

    @pytest.mark.parametrize(("strategy", "expected"), [("StrictFIFO", []), ("BestEffortFIFO", ["small"])])
    def test_strict_fifo_blocks_behind_a_head_that_does_not_fit(self, strategy: str, expected: list[str]) -> None:
        kueue = _admission(ClusterQueue(name="cq", queueing_strategy=strategy, nominal_quota={"gpu": 2}))
        kueue.submit(_w("big", "cq", at=0, amount=3))
        kueue.submit(_w("small", "cq", at=1))
        assert [w.id for w in kueue.cycle(0.0)[0]] == expected

    def test_borrowing_is_bounded_by_the_lenders_limit_and_the_borrowing_limit(self) -> None:
        lender = ClusterQueue(name="a", nominal_quota={"gpu": 4}, cohort="c", lending_limit={"gpu": 1})
        borrower = ClusterQueue(name="b", nominal_quota={"gpu": 2}, cohort="c", borrowing_limit={"gpu": 3})
        kueue = _admission(lender, borrower)
        for i in range(5):
            kueue.submit(_w(f"b{i}", "b", at=i))
        assert len(kueue.cycle(0.0)[0]) == 3  # 2 nominal + 1 lent
        kueue.spec.cluster_queues[0].lending_limit["gpu"] = 4
        assert len(kueue.cycle(1.0)[0]) == 2  # now up to the borrowing limit: 2 + 3

    def test_lower_priority_is_preempted_within_the_queue(self) -> None:
        kueue = _admission(
            ClusterQueue(
                name="cq", nominal_quota={"gpu": 1}, preemption=Preemption(within_cluster_queue="LowerPriority")
            )
        )
        kueue.submit(_w("low", "cq", at=0))
        kueue.cycle(0.0)
        kueue.submit(_w("high", "cq", at=1, priority=100))
        admitted, preempted = kueue.cycle(1.0)
        assert [w.id for w in admitted] == ["high"] and [w.id for w in preempted] == ["low"]
        assert [w.id for w in kueue.pending["cq"]] == ["low"]

    def test_reclaim_within_cohort_evicts_the_borrower(self) -> None:
        owner = ClusterQueue(
            name="a", nominal_quota={"gpu": 2}, cohort="c", preemption=Preemption(reclaim_within_cohort="Any")
        )
        borrower = ClusterQueue(name="b", nominal_quota={"gpu": 0}, cohort="c")
        kueue = _admission(owner, borrower)
        kueue.submit(_w("b0", "b", at=0))
        kueue.submit(_w("b1", "b", at=0))
        assert len(kueue.cycle(0.0)[0]) == 2
        kueue.submit(_w("a0", "a", at=1))
        admitted, preempted = kueue.cycle(1.0)
        assert [w.id for w in admitted] == ["a0"] and len(preempted) == 1


class TestCalibration:
    def test_every_default_names_its_source(self) -> None:
        assert all(len(entry.source) > 20 for entry in DEFAULTS.values())

    def test_a_file_entry_without_source_is_refused(self, tmp_path) -> None:
        path = tmp_path / "cal.yaml"
        path.write_text("gpu_speedup: {value: 2}\n")
        with pytest.raises(CalibrationError, match="source"):
            Calibration.default().merged(path)

    def test_a_file_entry_overrides_with_its_source(self, tmp_path) -> None:
        path = tmp_path / "cal.json"
        path.write_text('{"gpu_speedup": {"value": 2, "source": "measured on our A100"}}')
        calibration = Calibration.default().merged(path)
        assert calibration["gpu_speedup"] == 2.0
        assert calibration.entries["gpu_speedup"].source == "measured on our A100"

    def test_sweep_syntax(self) -> None:
        assert parse_sweep("slice_alpha=0.25,0.5") == ("slice_alpha", [0.25, 0.5])
        with pytest.raises(CalibrationError, match="key=v1,v2"):
            parse_sweep("slice_alpha")

    def test_unknown_key_lists_the_known_ones(self) -> None:
        with pytest.raises(CalibrationError, match="gpu_speedup"):
            Calibration.default()["no_such_key"]
