"""``FakeJobBackend``: jobs run in memory, each one driven by a handler, like httpx's ``MockTransport``.

A :class:`FakeCluster` plays what Kueue and the Job controller do: it queues submitted jobs,
admits the highest priority first onto ``slots`` slots, and calls ``handler(run)`` with a
:class:`FakeRun` for each admitted job. The handler scripts the job's life::

    async def handler(run: FakeRun) -> None:
        await run.start()                   # running
        await run.transcribe(recordings=1)  # the transcriber's work for the first recording only
        await run.fail("OOMKilled")         # ... then it dies: the dispatcher retries the rest

A handler that returns without ending the run succeeds it (a process exiting 0); one that
raises fails it with the exception as the reason (a crash). ``evict`` and ``preempt`` end a run
as Kueue does, and the dispatcher requeues its recordings without counting an attempt.

The outcome path is the real one: :meth:`FakeRun.transcribe` calls ``runner(job_id, recordings)``,
and :func:`transcriber_runner` runs the transcriber's own ``run_job`` in-process (spec read
from the jobs KV bucket, real faster-whisper, status written, ``TranscriptReady`` published
with its fixed id). Publishing hand-made ``TranscriptReady`` events would be quicker, but the
behaviour suite asserts exactly-once outcomes, retries of unfinished recordings and restart
adoption, and those depend on what the transcriber does (skip recordings that have an outcome,
skip ones another job now owns, dedupe the event id); a fake of that would copy it and could
drift from it, so the fake runs it instead.

The cluster outlives the backends attached to it, as a real cluster outlives a dispatcher: a
second ``FakeJobBackend(cluster=cluster)`` sees the live jobs in ``active()`` and hears their
states, which is how the suite tests restart reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from services.common.errors import ConfigurationError
from services.dispatcher.backends.base import JobBackend
from services.dispatcher.domain import TERMINAL_STATES, JobState, TranscriptionJob

if TYPE_CHECKING:
    from nats.js import JetStreamContext

logger = logging.getLogger(__name__)

Handler = Callable[["FakeRun"], Awaitable[None]]
Runner = Callable[[str, int | None], Awaitable[Any]]
"""``runner(job_id, recordings)``: do the transcriber's work for the first ``recordings`` of the job (all if None)."""


async def run_to_completion(run: FakeRun) -> None:
    """The default handler: start, transcribe everything, succeed."""
    await run.start()
    await run.transcribe()


class FakeRun:
    """One admitted job on the fake cluster; the handler moves it through its states."""

    def __init__(self, cluster: FakeCluster, job: TranscriptionJob) -> None:
        self.cluster = cluster
        self.job = job
        self.states: list[JobState] = [JobState.queued]

    @property
    def state(self) -> JobState:
        return self.states[-1]

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    async def start(self) -> None:
        """The pod or process starts (``running``)."""
        await self.cluster._transition(self, JobState.running)

    async def transcribe(self, recordings: int | None = None) -> Any:
        """Do the transcriber's work for the first ``recordings`` recordings (all by default)."""
        if self.cluster.runner is None:
            raise ConfigurationError(
                "FakeJobBackend has no runner: pass runner=transcriber_runner(js, engine) to run the transcriber"
            )
        return await self.cluster.runner(self.job.job_id, recordings)

    async def succeed(self) -> None:
        await self.cluster._transition(self, JobState.succeeded, exit_code=0)

    async def fail(self, reason: str = "transcriber exited with code 1", *, exit_code: int = 1) -> None:
        await self.cluster._transition(self, JobState.failed, reason=reason, exit_code=exit_code)

    async def evict(self, reason: str = "node drained") -> None:
        """Kueue evicted the workload (the reason reads as a real one: ``Evicted: ...``)."""
        await self.cluster._transition(self, JobState.evicted, reason=f"Evicted: {reason}")

    async def preempt(self, reason: str = "InClusterQueue: by a higher priority workload") -> None:
        await self.cluster._transition(self, JobState.evicted, reason=f"Preempted: {reason}")


class FakeCluster:
    """Slots, a priority queue and the runs; shared by every backend attached to it.

    Subclasses may override :meth:`_effect` to make each state change happen somewhere else
    (the Kubernetes suite patches Job and Workload status on an emulator there).
    """

    def __init__(self, handler: Handler | None = None, *, slots: int | None = 1, runner: Runner | None = None) -> None:
        self.handler: Handler = handler or run_to_completion
        self.slots = slots
        self.runner = runner
        self.runs: dict[str, FakeRun] = {}
        self.admitted: list[str] = []
        """Job ids in the order they were admitted (what priority order is tested on)."""
        self._queue: list[tuple[int, int, TranscriptionJob]] = []
        self._order = itertools.count()
        self._busy: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._backends: list[FakeJobBackend] = []
        self._closed = False

    # --- used by the backends ------------------------------------------------------------------
    def attach(self, backend: FakeJobBackend) -> None:
        """A new watcher; like a listing, it hears the current state of every live job first."""
        self._backends.append(backend)
        for run in self.runs.values():
            if not run.done:
                backend._emit(run.job.job_id, run.state)

    def detach(self, backend: FakeJobBackend) -> None:
        with contextlib.suppress(ValueError):
            self._backends.remove(backend)

    async def enqueue(self, job: TranscriptionJob) -> None:
        """Queue a job; one already known (a retried submit) is not queued again."""
        if self._closed:
            raise RuntimeError("FakeCluster is closed")
        if job.job_id in self.runs:
            return
        run = self.runs[job.job_id] = FakeRun(self, job)
        self._broadcast(run, JobState.queued, {})
        self._queue.append((-job.priority.rank, next(self._order), job))
        self._queue.sort(key=lambda entry: entry[:2])
        await self._schedule()

    def active(self) -> list[str]:
        return sorted(job_id for job_id, run in self.runs.items() if not run.done)

    def free_slots(self) -> int | None:
        if self.slots is None:
            return None
        return max(0, self.slots - len(self._busy) - len(self._queue))

    async def cancel(self, job_id: str) -> None:
        """Drop a queued job, or stop a running one (it fails as a killed process does)."""
        self._queue = [entry for entry in self._queue if entry[2].job_id != job_id]
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        run = self.runs.get(job_id)
        if run is not None and not run.done:
            await self._transition(run, JobState.failed, reason="cancelled", exit_code=-9)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    # --- running -------------------------------------------------------------------------------
    async def _schedule(self) -> None:
        while self._queue and (self.slots is None or len(self._busy) < self.slots):
            _, _, job = self._queue.pop(0)
            run = self.runs[job.job_id]
            self._busy.add(job.job_id)
            self.admitted.append(job.job_id)
            await self._transition(run, JobState.admitted)
            self._tasks[job.job_id] = asyncio.create_task(self._drive(run), name=f"fake-job-{job.job_id}")

    async def _drive(self, run: FakeRun) -> None:
        try:
            await self.handler(run)
            if not run.done:
                await run.succeed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job's process crashed: report it as a failed job would be
            logger.debug("fake job %s crashed: %s", run.job.job_id, exc)
            if not run.done:
                await self._transition(run, JobState.failed, reason=f"{type(exc).__name__}: {exc}", exit_code=1)
        finally:
            self._tasks.pop(run.job.job_id, None)

    async def _transition(self, run: FakeRun, state: JobState, **fields: object) -> None:
        if run.done:
            return  # a run ends once; later calls (e.g. succeed after evict) are ignored
        run.states.append(state)
        await self._effect(run, state, fields)
        if state in TERMINAL_STATES:
            self._busy.discard(run.job.job_id)
            if not self._closed:
                await self._schedule()

    async def _effect(self, run: FakeRun, state: JobState, fields: dict[str, object]) -> None:
        """Make the state change observable: here, an event on every attached backend's stream."""
        self._broadcast(run, state, fields)

    def _broadcast(self, run: FakeRun, state: JobState, fields: dict[str, object]) -> None:
        for backend in self._backends:
            backend._emit(run.job.job_id, state, **fields)


class FakeJobBackend(JobBackend):
    """In-memory backend over a :class:`FakeCluster` (its own unless ``cluster`` is shared)."""

    kind: ClassVar[str] = "fake"

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        cluster: FakeCluster | None = None,
        slots: int | None = 1,
        runner: Runner | None = None,
        **_options: object,
    ) -> None:
        super().__init__()
        self._owns_cluster = cluster is None
        self.cluster = cluster or FakeCluster(handler, slots=slots, runner=runner)
        self.cluster.attach(self)
        self._closed = False

    async def submit(self, job: TranscriptionJob) -> None:
        if self._closed:
            raise RuntimeError("FakeJobBackend is closed")
        await self.cluster.enqueue(job)

    async def cancel(self, job_id: str) -> None:
        await self.cluster.cancel(job_id)

    async def active(self) -> list[str]:
        return self.cluster.active()

    def free_slots(self) -> int | None:
        return self.cluster.free_slots()

    def capacity(self) -> int | None:
        return self.cluster.slots

    async def aclose(self) -> None:
        """Stop listening; the cluster's jobs go on unless this backend made the cluster."""
        if self._closed:
            return
        self._closed = True
        self.cluster.detach(self)
        if self._owns_cluster:
            await self.cluster.aclose()
        self._close_stream()


def transcriber_runner(js: JetStreamContext, engine: Any = None) -> Runner:
    """A runner doing what ``python -m services.transcriber --job ID`` does, in this process.

    ``engine`` is a loaded :class:`services.transcriber.engine.Engine` (one is made if omitted);
    sharing one across runs spares loading the model per job.
    """

    async def run(job_id: str, recordings: int | None) -> Any:
        from services.dispatcher.jobs_store import JobStore
        from services.transcriber.engine import Engine
        from services.transcriber.job import run_job

        nonlocal engine
        if engine is None:
            engine = Engine()
        job = await (await JobStore.open(js)).get(job_id)
        if job is None:
            raise RuntimeError(f"job {job_id!r} not found in the jobs KV bucket")
        if recordings is not None:
            job = job.model_copy(update={"recordings": job.recordings[:recordings]})
        return await run_job(js, job, engine)

    return run
