"""``LocalJobBackend``: transcription jobs as subprocesses on N slots (the embedded default).

Each slot runs one ``python -m services.transcriber`` at a time with one CTranslate2 thread, so
N slots use N cores. Starting Python, importing faster-whisper and loading the model costs more
than transcribing a short clip, so each slot pre-spawns its next process (``--job -``): it
imports, loads the default model and connects while the slot is still busy, then reads its job
id from stdin once the slot is granted. That is what the Kubernetes backend cannot do, and why
the local backend approaches the warm-process floor.

States reported per job: queued (submitted) → admitted (slot granted) → running (job id handed
to a process) → succeeded (exit 0) / failed (any other exit, with the exit code and the tail of
stderr as the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from services.common.settings import Settings
from services.dispatcher.backends.base import JobBackend
from services.dispatcher.domain import JobState, TranscriptionJob

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class _Process:
    """A transcriber subprocess and the file its stderr goes to."""

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def cleanup(self) -> None:
        self.stderr_path.unlink(missing_ok=True)


class LocalJobBackend(JobBackend):
    """Runs jobs as local subprocesses on ``slots`` slots, highest priority first."""

    kind: ClassVar[str] = "local"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        slots: int | None = None,
        prespawn: bool | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        configured = slots if slots is not None else self.settings.dispatcher.slots
        self.slots = configured if configured > 0 else (os.cpu_count() or 1)
        self.prespawn = self.settings.dispatcher.prespawn if prespawn is None else prespawn
        self.python = python
        self.extra_env = dict(env or {})
        self._queue: asyncio.PriorityQueue[tuple[int, int, TranscriptionJob]] | None = None
        self._counter = itertools.count()
        self._known: set[str] = set()
        self._queued: set[str] = set()
        self._running: dict[str, _Process] = {}
        self._idle: set[_Process] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._closed = False
        self._tmp = Path(tempfile.mkdtemp(prefix="kubescribe-jobs-"))

    # --- protocol ----------------------------------------------------------------------------
    async def submit(self, job: TranscriptionJob) -> None:
        if self._closed:
            raise RuntimeError("LocalJobBackend is closed")
        if job.job_id in self._known:
            return
        self._start_workers()
        assert self._queue is not None
        self._known.add(job.job_id)
        self._queued.add(job.job_id)
        await self._queue.put((-job.priority.rank, next(self._counter), job))
        self._emit(job.job_id, JobState.queued)

    async def cancel(self, job_id: str) -> None:
        self._queued.discard(job_id)
        process = self._running.get(job_id)
        if process is not None:
            process.kill()

    async def active(self) -> list[str]:
        return sorted(self._queued | set(self._running))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for process in [*self._running.values(), *self._idle]:
            process.kill()
            with contextlib.suppress(Exception):
                await process.process.wait()
            process.cleanup()
        self._running.clear()
        self._idle.clear()
        self._close_stream()
        with contextlib.suppress(OSError):
            self._tmp.rmdir()

    # --- introspection (CLI, tests, metrics) -------------------------------------------------
    def capacity(self) -> int:
        return self.slots

    def free_slots(self) -> int:
        """Slots neither busy nor promised to a queued job."""
        queued = self._queue.qsize() if self._queue else 0
        return max(0, self.slots - self._busy - queued)

    def pid_of(self, job_id: str) -> int | None:
        process = self._running.get(job_id)
        return process.process.pid if process else None

    async def start(self) -> None:
        """Start the slots now, so their warm transcribers are ready before the first job arrives
        (optional: ``submit`` starts them too)."""
        self._start_workers()

    # --- slots -------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        if self._workers:
            return
        self._queue = asyncio.PriorityQueue()
        self._workers = [asyncio.create_task(self._slot(i), name=f"local-slot-{i}") for i in range(self.slots)]

    async def _spawn(self, *args: str) -> _Process:
        """Start a transcriber; a cancellation mid-start still kills and reaps the new process."""
        task = asyncio.ensure_future(self._create(*args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                process = await task
                process.kill()
                await process.process.wait()
                process.cleanup()
            raise

    async def _create(self, *args: str) -> _Process:
        env = {**os.environ, **self.extra_env}
        # One thread per slot unless configured otherwise (e.g. one slot owning the machine);
        # an explicit ``env`` override wins over the settings, as for every other variable.
        threads = self.extra_env.get("KUBESCRIBE_WHISPER_CPU_THREADS") or str(self.settings.transcriber.cpu_threads)
        env.update(
            KUBESCRIBE_NATS_URL=self.settings.nats.url,
            KUBESCRIBE_WHISPER_CPU_THREADS=threads,
            OMP_NUM_THREADS=threads,
            HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
            PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        )
        fd, name = tempfile.mkstemp(prefix="transcriber-", suffix=".log", dir=self._tmp)
        try:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "services.transcriber",
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=fd,
                env=env,
                cwd=str(PROJECT_ROOT),
            )
        finally:
            os.close(fd)
        logger.debug("started transcriber pid %d (%s)", process.pid, " ".join(args))
        return _Process(process, Path(name))

    async def _slot(self, index: int) -> None:
        """One slot: keep a warm process ready, hand it the next job, report how it ended.

        When jobs are queued, the next warm process is spawned as soon as the current one takes its
        job, so at most two processes exist per slot: one working, one loading or waiting."""
        assert self._queue is not None
        warm: _Process | None = None
        try:
            while True:
                if self.prespawn and (warm is None or not warm.alive):
                    if warm is not None:
                        warm.cleanup()
                    warm = await self._spawn("--job", "-", "--preload", self.settings.dispatcher.default_model)
                    self._idle.add(warm)
                _, _, job = await self._queue.get()
                if job.job_id not in self._queued:
                    continue  # cancelled while queued
                self._queued.discard(job.job_id)
                self._busy += 1
                try:
                    self._emit(job.job_id, JobState.admitted)
                    process = await self._hand_over(warm, job)
                    warm = None
                    if self.prespawn and not self._queue.empty():
                        # More jobs wait: the successor starts now, so its start-up and model load
                        # overlap this job instead of delaying the next one. With nothing queued it
                        # starts after this job instead, so it never steals a core from a running
                        # job on a CPU-only machine (measured: +6 % mean JCT under Poisson arrivals).
                        warm = await self._spawn("--job", "-", "--preload", self.settings.dispatcher.default_model)
                        self._idle.add(warm)
                    await self._run(job, process)
                finally:
                    self._busy -= 1
        finally:
            if warm is not None:
                warm.kill()

    async def _hand_over(self, warm: _Process | None, job: TranscriptionJob) -> _Process:
        if warm is not None:
            self._idle.discard(warm)
            if warm.alive and warm.process.stdin is not None:
                try:
                    warm.process.stdin.write(f"{job.job_id} {time.time_ns()}\n".encode())
                    await warm.process.stdin.drain()
                    warm.process.stdin.close()
                    return warm
                except (BrokenPipeError, ConnectionResetError):
                    pass
            logger.warning("pre-spawned transcriber died (%s); starting a fresh one", warm.tail())
            warm.cleanup()
        return await self._spawn("--job", job.job_id, "--handed-at-ns", str(time.time_ns()))

    async def _run(self, job: TranscriptionJob, process: _Process) -> None:
        self._running[job.job_id] = process
        self._emit(job.job_id, JobState.running)
        try:
            code = await process.process.wait()
        finally:
            self._running.pop(job.job_id, None)
        if code == 0:
            self._emit(job.job_id, JobState.succeeded, exit_code=0)
        else:
            tail = process.tail()
            reason = f"transcriber exited with code {code}" + (f": {tail}" if tail else "")
            self._emit(job.job_id, JobState.failed, exit_code=code, reason=reason)
        process.cleanup()
