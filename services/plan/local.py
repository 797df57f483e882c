"""The local backend on the virtual clock: ``slots`` transcriber slots (one per core), warm
pre-spawned processes, and the real planner fed the backend's free slots, as on one machine.

It mirrors ``services/dispatcher/backends/local.py``: a slot hands its job to a warm process
(started earlier and loading the model meanwhile); when more jobs wait, the successor starts at
once, otherwise after the job. A job costs its process's remaining start-up, then per recording
``local.per_file_s + audio × local.rtf``. Start-ups and transcriptions queue for the machine's
cores: with sparse short arrivals every recording is a job and every job a start-up, and those
start-ups take cores from running jobs (without this, Poisson arrivals of short recordings were
under-predicted by 36–43 %). Every ``local.*`` number comes from
:mod:`services.plan.measure` run on this machine; the grounding test holds the prediction to
real replays (makespan and mean JCT within 15 %).
"""

from __future__ import annotations

import itertools

import simpy

from services.common.events import ObjectRef, Priority
from services.common.settings import DispatcherSettings
from services.dispatcher.domain import JobRecording, TranscriptionJob
from services.dispatcher.planner import Pending, Planner
from services.plan.calibration import Calibration
from services.plan.sim import Recording, Result, SimJob


class LocalSim:
    def __init__(
        self,
        calibration: Calibration,
        recordings: list[Recording],
        *,
        slots: int,
        prespawn: bool = True,
        settings: DispatcherSettings | None = None,
        cores: int | None = None,
    ) -> None:
        self.cal, self.recordings, self.slots, self.prespawn = calibration, recordings, slots, prespawn
        self.env = simpy.Environment()
        # The local twin models whole recordings: the planner's own split is off unless asked for.
        self.planner = Planner(settings or DispatcherSettings(split_threshold_s=0.0))
        self.queue = simpy.PriorityStore(self.env)
        self.cpu = simpy.Resource(self.env, capacity=cores or slots)
        """The machine's cores: transcriptions and transcriber start-ups queue for them."""
        self.by_id = {r.id: r for r in recordings}
        self.busy = 0
        self.jobs: list[SimJob] = []
        self._order = itertools.count()
        self._wake = self.env.event()

    def run(self) -> Result:
        for index in range(self.slots):
            self.env.process(self._slot(index))
        self.env.process(self._dispatcher())
        # Recordings sent at the same instant reach the dispatcher in the order they were sent:
        # the ingest stores and announces them one after another, a few milliseconds each, and
        # on a quiet machine that, not their size, sets the order (a replayed burst of 12
        # reached it as 4, 0, 8, 3, 2, 6, ...). The planner numbers them so, and a packed job
        # transcribes them in that order.
        for recording in sorted(self.recordings, key=lambda r: r.arrival):
            self.env.process(self._arrive(recording))
        self._finished = self.env.event()
        self.env.run(until=self._finished)
        return Result(self.recordings, self.jobs, [])

    def _wakeup(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _arrive(self, recording: Recording):
        yield self.env.timeout(recording.arrival)
        job_recording = JobRecording(
            recording_id=recording.id,
            audio=ObjectRef(bucket="audio", name=recording.id),
            tenant=recording.tenant,
            priority=Priority(recording.priority),
            duration_s=recording.duration_s,
        )
        self.planner.add(Pending(job_recording, recording.model, self.env.now))
        self._wakeup()

    def free_slots(self) -> int:
        return max(0, self.slots - self.busy - len(self.queue.items))

    def _dispatcher(self):
        while True:
            for job in self.planner.plan(self.env.now, self.free_slots()):
                self.queue.put(simpy.PriorityItem((-job.priority.rank, next(self._order)), job))
            deadline = self.planner.next_deadline(self.env.now)
            self._wake = self.env.event()
            waits = [self._wake]
            if deadline is not None:
                waits.append(self.env.timeout(max(0.01, deadline - self.env.now)))
            yield self.env.any_of(waits)

    def _spawn(self) -> simpy.Event:
        """A transcriber starting: its start-up and model load need a core like any other work."""
        ready = self.env.event()

        def start():
            with self.cpu.request() as core:
                yield core
                yield self.env.timeout(self.cal["local.spawn_s"])
            ready.succeed()

        self.env.process(start())
        return ready

    def _slot(self, index: int):
        ready = self.env.event()
        ready.succeed()  # warm before the clock starts, as after the stack's settle
        while True:
            item = yield self.queue.get()
            job: TranscriptionJob = item.item
            self.busy += 1
            handed = self.env.now
            if not self.prespawn:
                ready = self._spawn()
            successor = self._spawn() if self.prespawn and self.queue.items else None
            yield ready
            start = self.env.now
            sim_job = SimJob(job.job_id, job.model, "cpu", job.priority.rank, [], created=handed)
            sim_job.started = start
            yield self.env.timeout(self.cal.get("local.per_job_s", 0.0))
            for recording in job.recordings:
                seconds = recording.duration_s or 0.0
                with self.cpu.request() as core:
                    yield core
                    yield self.env.timeout(self.cal["local.per_file_s"] + seconds * self.cal["local.rtf"])
                done = self.by_id[recording.recording_id]
                done.started, done.done, done.parts_done = start, self.env.now, 1
                sim_job.parts.append((recording.recording_id, seconds))
            sim_job.finished = self.env.now
            sim_job.runs.append((f"slot-{index}", "cpu", handed, self.env.now))
            self.jobs.append(sim_job)
            ready = successor if successor is not None else self._spawn()
            self.busy -= 1
            self._wakeup()
            if all(r.done is not None for r in self.recordings) and not self._finished.triggered:
                self._finished.succeed()
