"""The cluster simulation: SimPy processes for Job creation, Kueue, kube-scheduler, DAS and the
pods themselves, on a virtual clock, with the real kubescribe planner choosing the Jobs.

Two ways recordings become Jobs, as in the paper and in the product:

- kubescribe off: one Job per recording, created by kube-burner at its ``qps`` (the paper);
- kubescribe on: recordings reach the dispatcher at their arrival time and
  :class:`services.dispatcher.planner.Planner` (imported, not copied) decides which go together,
  on the simulation's clock, exactly as the dispatcher's plan loop calls it (``plan(now)`` on
  every arrival and at ``next_deadline``; the Kubernetes backend reports no free slots).

A pod's life: created (after Kueue admission if the Job has a queue) → Pending in the
scheduling queue → bound to a GPU (whole, or a MIG slice that DAS creates first) → started →
model fetched and loaded → each recording fetched and transcribed → done, freeing the GPU and
waking Kueue and the scheduler. Times come from :class:`Calibration`, each with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import simpy

from services.common.events import ObjectRef, Priority
from services.common.settings import DispatcherSettings
from services.dispatcher.domain import JobRecording
from services.dispatcher.planner import Pending, Planner
from services.plan.calibration import Calibration
from services.plan.gpus import COMPUTE_SLICES, WHOLE, Gpu, profile_of
from services.plan.kueue import Admission, Workload
from services.plan.scheduler import QueuedPod, SchedulingQueue
from services.plan.spec import ClusterSpec


@dataclass
class Recording:
    id: str
    arrival: float
    duration_s: float
    model: str
    tenant: str = "default"
    priority: str = "normal"
    parts: int = 1
    parts_done: int = 0
    done: float | None = None
    started: float | None = None


@dataclass
class SimJob:
    id: str
    model: str
    resource: str
    priority: int
    parts: list[tuple[str, float]]
    """(recording id, seconds of audio) of each piece of work, in order."""
    local_queue: str | None = None
    created: float = 0.0
    admitted: float | None = None
    bound: float | None = None
    started: float | None = None
    finished: float | None = None
    gpu: str | None = None
    evictions: int = 0
    process: Any = None
    runs: list[tuple[str, str, float, float]] = field(default_factory=list)
    """(gpu, resource, from, to) of every time it held a GPU (evictions included)."""


@dataclass
class Result:
    recordings: list[Recording]
    jobs: list[SimJob]
    gpus: list[Gpu]
    events: int = 0


def dispatcher_settings(spec: ClusterSpec) -> DispatcherSettings:
    """The dispatcher's settings for a spec (built once per arm: reading them is not free).

    The simulation models splitting itself (``kubescribe.split_s``, one arm of its own), so the
    real planner's own split (``split_threshold_s``) is off unless a spec sets it: otherwise the
    simulated chunks would be split a second time."""
    return DispatcherSettings(**{"split_threshold_s": 0.0, **spec.kubescribe.dispatcher})


class ClusterSim:
    """One run of one spec over one trace; :meth:`run` returns the :class:`Result`."""

    def __init__(
        self,
        spec: ClusterSpec,
        calibration: Calibration,
        recordings: list[Recording],
        settings: DispatcherSettings | None = None,
    ) -> None:
        self.spec, self.cal, self.recordings = spec, calibration, recordings
        self.env = simpy.Environment()
        self.gpus = [
            Gpu(f"{pool.type}-{i}", pool.type, f"node-{i // pool.per_node}")
            for pool in spec.gpus
            for i in range(pool.count)
        ]
        self.queue = SchedulingQueue(spec.scheduler)
        self.kueue = Admission(spec.kueue) if spec.kueue.enabled else None
        self.jobs: dict[str, SimJob] = {}
        self.by_id = {r.id: r for r in recordings}
        self._kick = self.env.event()
        settings = settings or dispatcher_settings(spec)
        if not spec.kubescribe.packing:
            settings = settings.model_copy(update={"max_job_recordings": 1, "target_job_audio_s": 0.0})
        self.planner = Planner(settings)
        self._planner_wake = self.env.event()
        self._events = 0

    # --- public -----------------------------------------------------------------------------
    def run(self) -> Result:
        self.env.process(self._scheduler())
        self.env.process(self._flush())
        if self.spec.kubescribe.enabled:
            self.env.process(self._dispatcher())
            for recording in self.recordings:
                self.env.process(self._arrive(recording))
        else:
            self.env.process(self._burner())
        self.env.run(until=self._all_done())
        return Result(self.recordings, list(self.jobs.values()), self.gpus, self._events)

    # --- how Jobs are made ----------------------------------------------------------------------
    def _resource(self, model: str) -> str:
        workload = self.spec.workload
        if not workload.das:
            return WHOLE
        if self.spec.kubescribe.enabled and self.spec.kubescribe.right_size:
            return self.planner.profile_for(model)
        return workload.profiles.get(model, workload.default_profile)

    def _priority(self, name: str) -> int:
        return self.spec.kueue.priority_classes.get(name, 0)

    def _queue_for(self, model: str) -> str | None:
        kueue = self.spec.kueue
        return kueue.queue_by_model.get(model, kueue.default_queue) if kueue.enabled else None

    def _burner(self):
        """kube-burner: one Job per recording, in trace order, at most ``qps`` per second."""
        interval = 1.0 / self.spec.burner.qps
        tokens, last = float(self.spec.burner.burst), 0.0
        for recording in sorted(self.recordings, key=lambda r: r.arrival):
            now = max(self.env.now, recording.arrival)
            tokens = min(self.spec.burner.burst, tokens + (now - last) / interval)
            last = now
            if tokens < 1.0:
                now += (1.0 - tokens) * interval
                tokens, last = 1.0, now
            tokens -= 1.0
            if now > self.env.now:
                yield self.env.timeout(now - self.env.now)
            job = SimJob(
                f"job-{recording.id}",
                recording.model,
                self._resource(recording.model),
                self._priority(recording.priority),
                [(recording.id, recording.duration_s)],
                self._queue_for(recording.model),
            )
            self._create(job)

    def _arrive(self, recording: Recording):
        yield self.env.timeout(recording.arrival)
        split = self.spec.kubescribe.split_s
        recording.parts = max(1, math.ceil(recording.duration_s / split)) if split else 1
        for index in range(recording.parts):
            part_id = recording.id if recording.parts == 1 else f"{recording.id}#{index}"
            job_recording = JobRecording(
                recording_id=part_id,
                audio=ObjectRef(bucket="audio", name=part_id),
                tenant=recording.tenant,
                priority=Priority(recording.priority),
                duration_s=recording.duration_s / recording.parts,
            )
            self.planner.add(Pending(job_recording, recording.model, self.env.now))
        if not self._planner_wake.triggered:
            self._planner_wake.succeed()

    def _dispatcher(self):
        """The dispatcher's plan loop on the virtual clock (consumer.py ``_plan_loop``)."""
        while True:
            for planned in self.planner.plan(self.env.now, None):
                parts = [(r.recording_id, r.duration_s or 0.0) for r in planned.recordings]
                job = SimJob(
                    f"job-{planned.job_id}",
                    planned.model,
                    self._resource(planned.model),
                    self._priority(planned.priority.value),
                    parts,
                    self._queue_for(planned.model),
                )
                self._create(job)
            deadline = self.planner.next_deadline(self.env.now)
            self._planner_wake = self.env.event()
            waits = [self._planner_wake]
            if deadline is not None:
                waits.append(self.env.timeout(max(0.01, deadline - self.env.now)))
            yield self.env.any_of(waits)

    def _create(self, job: SimJob) -> None:
        job.created = self.env.now
        self.jobs[job.id] = job
        if self.kueue is not None and job.local_queue is not None:
            self.kueue.submit(
                Workload(job.id, self.kueue.queue_of(job.local_queue), job.resource, job.priority, job.created)
            )
            self._admit()
        else:
            self.env.process(self._pod_created(job, self.cal["pod_create_s"]))

    # --- Kueue ----------------------------------------------------------------------------------
    def _admit(self) -> None:
        assert self.kueue is not None
        admitted, preempted = self.kueue.cycle(self.env.now)
        for workload in preempted:
            self._evict(self.jobs[workload.id])
        for workload in admitted:
            job = self.jobs[workload.id]
            job.admitted = self.env.now
            self.env.process(self._pod_created(job, self.cal["kueue_admit_s"] + self.cal["pod_create_s"]))

    def _evict(self, job: SimJob) -> None:
        job.evictions += 1
        self.queue.remove(job.id)
        if job.process is not None and job.process.is_alive:
            job.process.interrupt("preempted")
        job.admitted = job.bound = job.started = None

    # --- kube-scheduler -------------------------------------------------------------------------
    def _pod_created(self, job: SimJob, delay: float):
        yield self.env.timeout(delay)
        if self.kueue is not None and job.local_queue is not None and job.id not in self.kueue.admitted:
            return  # evicted before its pod existed
        self.queue.add(QueuedPod(job.id, job.priority, self.env.now))
        self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        if not self._kick.triggered:
            self._kick.succeed()

    def _scheduler(self):
        while True:
            full: set[str] = set()  # placing pods only ever takes capacity: a miss stays a miss this pass
            for pod in self.queue.pop_ready(self.env.now):
                job = self.jobs[pod.key]
                gpu = None if job.resource in full else next((g for g in self.gpus if g.fits(job.resource)), None)
                if gpu is None:
                    full.add(job.resource)
                    self.queue.failed(pod, self.env.now)
                    continue
                gpu.take(job.id, job.resource)
                job.gpu, job.bound = gpu.name, self.env.now
                job.process = self.env.process(self._pod(job, gpu))
            timer = self.queue.next_timer()
            self._kick = self.env.event()
            waits = [self._kick]
            if timer is not None:
                waits.append(self.env.timeout(max(0.0, timer - self.env.now)))
            yield self.env.any_of(waits)

    def _flush(self):
        while True:
            yield self.env.timeout(self.spec.scheduler.flush_period_s)
            before = len(self.queue.unschedulable)
            self.queue.flush(self.env.now)
            if len(self.queue.unschedulable) != before:
                self._wake_scheduler()

    # --- the pod ----------------------------------------------------------------------------------
    def _speed(self, gpu: Gpu, resource: str) -> float:
        compute = profile_of(gpu.gpu_type, resource).compute
        return self.cal["gpu_speedup"] * (compute / COMPUTE_SLICES) ** self.cal["slice_alpha"]

    def _model_fetch_s(self, model: str) -> float:
        load = self.cal["model_load_s"]
        if self.spec.kubescribe.enabled and self.spec.kubescribe.model_cache:
            return load
        name = "large-v3" if model.removesuffix(".en") in ("large", "large-v2") else model.removesuffix(".en")
        size_gb = self.cal.get(f"model_gb.{name}", 0.0)
        return load + size_gb * 1000.0 / self.cal["download_mb_s"]

    def _pod(self, job: SimJob, gpu: Gpu):
        bound = self.env.now
        try:
            if self.spec.workload.das and job.resource != WHOLE:
                yield self.env.timeout(self.cal["das_slice_s"])
            yield self.env.timeout(self.cal["pod_start_s"] + self._model_fetch_s(job.model))
            job.started = self.env.now
            speed = self._speed(gpu, job.resource)
            for recording_id, audio_s in job.parts:
                recording = self.by_id[recording_id.split("#", 1)[0]]
                recording.started = recording.started if recording.started is not None else self.env.now
                yield self.env.timeout(self.cal["audio_fetch_s"] + audio_s * self.cal.rtf(job.model) / speed)
            job.finished = self.env.now
            for recording_id, _ in job.parts:
                self._part_done(self.by_id[recording_id.split("#", 1)[0]])
        except simpy.Interrupt:
            pass
        finally:
            job.runs.append((gpu.name, job.resource, bound, self.env.now))
            gpu.release(job.id)
            self._events += 1
            if job.finished is not None and self.kueue is not None:
                self.kueue.finish(job.id)
            self.queue.on_resources_freed(self.env.now)
            self._wake_scheduler()
            if self.kueue is not None:
                self._admit()

    def _part_done(self, recording: Recording) -> None:
        recording.parts_done += 1
        if recording.parts_done == recording.parts:
            merge = self.cal["split_merge_s"] if recording.parts > 1 else 0.0
            recording.done = self.env.now + merge
            if all(r.done is not None for r in self.recordings) and not self._finished.triggered:
                self._finished.succeed()

    def _all_done(self) -> simpy.Event:
        self._finished = self.env.event()
        return self._finished
