"""Process supervision for the embedded runtime: start, watch, health-check, restart and stop children.

A child that dies is started again from its own spec (same port, same data directory) by
:meth:`Supervisor.watch`, after the backoff of a :class:`RestartPolicy` (a pod's CrashLoopBackOff).

Each service runs as its own process (like a pod), in its own process group, with its output
prefixed by its name and interleaved on the console and copied to ``<log_dir>/<name>.log``.
Stopping must leave no orphan, including children of children (the dispatcher's transcriber
subprocesses), so :meth:`ManagedProcess.stop` collects the whole process tree (psutil)
before signalling, signals the group and every descendant, and escalates to SIGKILL. Children
also get ``PR_SET_PDEATHSIG`` so that even a SIGKILLed supervisor does not leave them running.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from services.runtime.processes import ProcessFailedError, descendants, pid_alive, wait_until

logger = logging.getLogger(__name__)

LogSink = Callable[[str, str], None]
"""Receives ``(process name, one line of its output)``."""

HealthCheck = Callable[[], bool]

_PR_SET_PDEATHSIG = 1
_libc = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: get SIGTERM when the supervising thread dies, however it dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# ---------------------------------------------------------------- process tree


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ---------------------------------------------------------------- health checks


def http_ok(url: str, timeout: float = 1.0) -> HealthCheck:
    """Healthy when ``GET url`` answers 2xx."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return 200 <= response.status < 300
        except (OSError, ValueError):
            return False

    return check


def file_exists(path: Path) -> HealthCheck:
    """Healthy once ``path`` exists (a consumer writes its ready file once it is consuming)."""
    return lambda: Path(path).exists()


# ---------------------------------------------------------------- processes


@dataclass
class ProcessSpec:
    """What to run; ``ready`` is polled after start until it passes."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Added to the supervisor's own environment."""
    ready: HealthCheck | None = None
    ready_timeout: float = 60.0
    stop_timeout: float = 10.0
    """Grace period between SIGTERM and SIGKILL; a service drains in-flight work in it."""
    prepare: Callable[[], None] | None = None
    """Run before every start, restarts included (removes a ready file a killed process left behind)."""


@dataclass(frozen=True)
class RestartPolicy:
    """A pod's ``restartPolicy: Always`` with CrashLoopBackOff, scaled to a laptop.

    The kubelet waits 10 s before the first restart, doubles up to 5 min and forgets a crash
    loop after 10 min of running; it never gives up. Here a person waits at the terminal and
    every process starts in a second or two, so: the first restart after 0.5 s (a killed
    service is back before a client's retry gives up), doubling to a cap of 10 s (a broken
    config does not spin the CPU), and after 5 crashes in a row (0.5 + 1 + 2 + 4 + 8 ≈ 15 s of
    trying) the stack gives up with an error that names the log, because a loop that long is a
    bug to read, not an outage to ride out. A process that ran for 30 s counts as healthy
    again: its next crash starts from 0.5 s.
    """

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_restarts: int = 5
    stable_after_s: float = 30.0

    def backoff(self, crashes: int) -> float:
        """The wait before restarting after the ``crashes``-th crash in a row (1, 2, ...)."""
        return min(self.initial_backoff_s * 2 ** max(0, crashes - 1), self.max_backoff_s)


class CrashLoopError(ProcessFailedError):
    """A process crashed ``max_restarts`` times in a row; its log says why."""


class ManagedProcess:
    """One child process in its own process group, with its output pumped to a sink and a log file."""

    def __init__(
        self, spec: ProcessSpec, *, sink: LogSink, log_dir: Path | None = None, log_path: Path | None = None
    ) -> None:
        self.spec = spec
        self.sink = sink
        self.log_path = log_path or (log_dir / f"{spec.name}.log" if log_dir else None)
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._tail: list[str] = []
        self.started_at: float | None = None
        """``time.monotonic()`` of the last start."""
        self.exited_at: float | None = None
        """When the supervisor noticed the last unexpected exit (None while it runs)."""
        self.crashes = 0
        """Crashes in a row (reset once it runs ``stable_after_s``)."""
        self.restarts = 0
        """Restarts in this process's life, for ``kubescribe up``'s messages and the chaos test."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self._process is not None:  # a restart: whatever is left of the old group goes first
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
        if self.spec.prepare is not None:
            self.spec.prepare()
        self.started_at, self.exited_at = time.monotonic(), None
        env = {**os.environ, **self.spec.env, "PYTHONUNBUFFERED": "1"}
        preexec = _die_with_parent if threading.current_thread() is threading.main_thread() else None
        self._process = subprocess.Popen(
            self.spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: signals reach its children too
            preexec_fn=preexec,  # only a prctl call
        )
        logger.debug("started %s (pid %d): %s", self.name, self._process.pid, " ".join(self.spec.argv))
        self._pump = threading.Thread(target=self._pump_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _pump_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        log: IO[str] | None = None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            for raw in iter(self._process.stdout.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail = [*self._tail[-39:], line]
                if log:
                    log.write(line + "\n")
                    log.flush()
                with contextlib.suppress(Exception):
                    self.sink(self.name, line)
        finally:
            if log:
                log.close()

    def output_tail(self) -> str:
        return "\n".join(self._tail[-20:])

    def exit_reason(self) -> str | None:
        """Why waiting on this process is pointless (it exited), or None while it runs."""
        return None if self.running else f"{self.name} exited with status {self.returncode}"

    def wait_ready(self, *, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll the health check; fail fast if the process exits first or the caller gives up."""
        if self.spec.ready is None:
            return

        def failed() -> str | None:
            return self.exit_reason() or ("interrupted" if should_stop() else None)

        wait_until(
            self.spec.ready,
            f"{self.name} to become ready",
            self.spec.ready_timeout,
            output=self.output_tail,
            failed=failed,
        )

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the group and every descendant, wait, then SIGKILL whatever is left."""
        process = self._process
        if process is None:
            return
        timeout = self.spec.stop_timeout if timeout is None else timeout
        tree = descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        _signal_all(tree, signal.SIGTERM)

        def gone() -> bool:
            nonlocal tree
            tree |= descendants(process.pid) if process.poll() is None else set()
            return process.poll() is not None and not any(pid_alive(pid) for pid in tree)

        try:
            wait_until(gone, f"{self.name} to stop", timeout)
        except ProcessFailedError:
            logger.warning("%s did not stop within %.0fs: killing it", self.name, timeout)
        if process.poll() is None:
            tree |= descendants(process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        _signal_all((pid for pid in tree if pid_alive(pid)), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if self._pump:
            self._pump.join(timeout=2)
        if process.stdout:
            process.stdout.close()


class Supervisor:
    """Starts processes in order, restarts the ones that die (:meth:`watch`), stops them in reverse."""

    def __init__(self, *, sink: LogSink, log_dir: Path | None = None, policy: RestartPolicy | None = None) -> None:
        self.sink = sink
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.processes: list[ManagedProcess] = []

    def start(
        self, spec: ProcessSpec, *, wait: bool = True, should_stop: Callable[[], bool] = lambda: False
    ) -> ManagedProcess:
        process = ManagedProcess(spec, sink=self.sink, log_dir=self.log_dir)
        self.processes.append(process)
        process.start()
        if wait:
            process.wait_ready(should_stop=should_stop)
        return process

    def exited(self) -> list[ManagedProcess]:
        """Processes that died on their own (a crashed service)."""
        return [p for p in self.processes if not p.running]

    def watch(self) -> list[str]:
        """One round of the restart policy: note new exits, restart those whose backoff is over.

        Non-blocking, so one thread can watch every process and a slow start-up of one does not
        delay the restart of another; readiness is each process's own health check. Returns the
        names restarted in this round; raises :class:`CrashLoopError` for a process that keeps
        crashing.
        """
        now = time.monotonic()
        restarted = []
        for process in self.exited():
            if process.exited_at is None:  # first time we see this exit
                process.exited_at = now
                ran = now - (process.started_at or now)
                process.crashes = 1 if ran >= self.policy.stable_after_s else process.crashes + 1
                if process.crashes > self.policy.max_restarts:
                    raise CrashLoopError(
                        f"{process.name} keeps crashing (exit {process.returncode}, "
                        f"{process.crashes - 1} restarts in a row); see {process.log_path or 'its output'}"
                        f"\n{process.output_tail()}"
                    )
                delay = self.policy.backoff(process.crashes)
                self.sink(process.name, f"exited with status {process.returncode}; restarting in {delay:g}s")
            if now - process.exited_at >= self.policy.backoff(process.crashes):
                process.restarts += 1
                process.start()
                restarted.append(process.name)
        return restarted

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # keep stopping the others: no orphan, whatever happens
                logger.exception("stopping %s failed", process.name)
        self.processes.clear()
