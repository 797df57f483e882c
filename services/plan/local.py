"""The local backend on the virtual clock: ``slots`` transcriber slots (one per core), warm
pre-spawned processes, and the real planner fed the backend's free slots, as on one machine.

It mirrors ``services/dispatcher/backends/local.py``: a slot hands its job to a warm process
(started earlier and loading the model meanwhile); when more jobs wait, the successor starts at
once, otherwise after the job's process has exited (``local.exit_s`` after its last transcript).
A job costs its process's remaining start-up, then per recording
``local.per_file_s + audio × local.rtf`` on a core (its first, the process's first, also
``local.first_file_s``), then ``local.per_file_io_s`` off the cores
(fetching the audio, storing the transcript, publishing its event, writing the status: NATS
round trips that hold the slot). Start-ups and transcriptions queue for the machine's cores:
with sparse short arrivals every recording is a job and every job a start-up, and those
start-ups take cores from running jobs (without this, Poisson arrivals of short recordings were
under-predicted by 36–43 %). A recording reaches the planner ``local.dispatch_s`` after it was
received (the ingest's event, the dispatcher's status writes and hand-off, beyond what the
planner itself waits). The rest of the stack shares the cores: ``local.arrival_cpu_s`` of core
time per upload (ingest, NATS, dispatcher) before it is planned, ``local.done_cpu_s`` after its
transcript (summarizer, LLM, notifier), both preempting transcriptions and start-ups. The
engine's numbers come from :mod:`services.plan.measure`, the pipeline ones from lone recordings
sent through a running stack (``loadgen.paper_ground``); absent, they are 0. The grounding
test holds the prediction to real replays (makespan and mean JCT within 15 %).
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
        self.cpu = simpy.PreemptiveResource(self.env, capacity=cores or slots)
        """The machine's cores: transcriptions and transcriber start-ups queue for them; the
        control plane's short bursts of work take a core first and push them back (as the OS
        scheduler gives a briefly waking process its slice before a long-running one's)."""
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
        yield self.env.timeout(recording.arrival + self.cal.get("local.dispatch_s", 0.0))
        # The ingest, NATS and the dispatcher working on this upload take core time from the
        # transcriptions, but do not hold its planning back: a replayed burst of 12 reached the
        # planner within 50 ms, while 12 × 0.1 s of their CPU, run before planning two at a time,
        # spread the twin's arrivals over 0.6 s and let the planner's quiet rule flush the first
        # two alone (the real dispatcher writes most of that CPU later, on the job's events).
        self._background(self.cal.get("local.arrival_cpu_s", 0.0))
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
            yield from self._work(self.cal["local.spawn_s"])
            ready.succeed()

        self.env.process(start())
        return ready

    def _work(self, seconds: float, *, urgent: bool = False):
        """``seconds`` of one core. Urgent work (the control plane's) preempts the rest, which
        resumes with what it has left, so a core's time is never lost or counted twice."""
        remaining = seconds
        while remaining > 1e-9:
            with self.cpu.request(priority=0 if urgent else 1, preempt=urgent) as core:
                began = None
                try:
                    yield core
                    began = self.env.now
                    yield self.env.timeout(remaining)
                    remaining = 0.0
                except simpy.Interrupt:  # preempted, possibly as the core was being granted
                    if began is not None:
                        remaining -= self.env.now - began

    def _background(self, seconds: float) -> None:
        """Control-plane core time off any slot (an upload's ingest and dispatch, a transcript's
        summary and notifier): it takes cores from the transcriptions running meanwhile and holds
        nothing back."""
        if seconds > 0:
            self.env.process(self._work(seconds, urgent=True))

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
            io_s = self.cal.get("local.per_file_io_s", 0.0)
            first_s = self.cal.get("local.first_file_s", 0.0)  # every job runs in a fresh process
            for index, recording in enumerate(job.recordings):
                seconds = recording.duration_s or 0.0
                cost = self.cal["local.per_file_s"] + seconds * self.cal["local.rtf"] + (first_s if index == 0 else 0.0)
                yield from self._work(cost)
                if io_s:
                    yield self.env.timeout(io_s)
                done = self.by_id[recording.recording_id]
                done.started, done.done, done.parts_done = start, self.env.now, 1
                self._background(self.cal.get("local.done_cpu_s", 0.0))
                sim_job.parts.append((recording.recording_id, seconds))
            sim_job.finished = self.env.now
            sim_job.runs.append((f"slot-{index}", "cpu", handed, self.env.now))
            self.jobs.append(sim_job)
            # The process drains NATS, flushes its spans and exits before the slot starts the next.
            yield self.env.timeout(self.cal.get("local.exit_s", 0.0))
            ready = successor if successor is not None else self._spawn()
            self.busy -= 1
            self._wakeup()
            if all(r.done is not None for r in self.recordings) and not self._finished.triggered:
                self._finished.succeed()
