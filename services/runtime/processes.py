"""The small pieces every local process and server shares: ports, waiting, stopping, process trees.

- :func:`free_port` picks a loopback port (racy by nature, fine for loopback tests and dev).
- :func:`wait_until` (and :func:`wait_until_async`) is the one health-poll loop: the supervisor,
  the local servers, the benchmarks and the tests all wait with it, so every timeout says what was
  awaited and shows the output of the process that did not get there.
- :func:`terminate` stops a child the same way everywhere: SIGTERM, a grace period, then SIGKILL.
  nats-server flushes JetStream files on SIGTERM and the Python services shut down their consumers
  cleanly, so every stop asks politely first; a process that hangs past the grace period is
  killed so that no test and no ``kubescribe up`` ever leaves one behind.
- :func:`descendants` / :func:`pid_alive` read the process tree through psutil.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from services.common.errors import KubescribeError

T = TypeVar("T")

Output = Callable[[], str]
"""Returns the last lines a process wrote: shown when a wait fails."""
Failed = Callable[[], str | None]
"""Returns why waiting is pointless now (``"nats exited with status 1"``), or None to keep waiting."""


class ProcessFailedError(KubescribeError):
    """A child exited, or what we waited for did not happen in time; the message carries its output."""


_HANDED_OUT: set[int] = set()
PORT_SPAN = 12_000
"""How many ports below the kernel's ephemeral range :func:`free_port` draws from."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default lower bound


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``, for a server about to start.

    Why not simply ``bind(0)``: that port comes from the kernel's ephemeral range, the same pool
    every outgoing connection draws from, so between our probe and the server's own bind a client
    socket (another test's, NATS reconnecting...) can take it, and the server fails with "address
    in use". The port is drawn at random below that range instead, is checked to be free, and is
    never handed out twice by this process.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - PORT_SPAN), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # the span is crowded: fall back to the kernel's choice
        sock.bind((host, 0))
        return sock.getsockname()[1]


def exited(process: subprocess.Popen, name: str) -> Failed:
    """A ``failed`` for :func:`wait_until`: the reason once ``process`` has exited."""
    return lambda: None if process.poll() is None else f"{name} exited with status {process.returncode}"


def file_tail(path: Path, chars: int = 2000) -> Output:
    """An ``output`` for :func:`wait_until`: the end of a log file a child writes."""
    return lambda: path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass
class _Poll:
    """The bookkeeping of one wait: its deadline, when to give up early, what to say on failure."""

    what: str
    timeout: float
    interval: float = 0.05
    output: Output | None = None
    failed: Failed | None = None
    ignore: tuple[type[BaseException], ...] = ()
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def error(self, reason: str) -> ProcessFailedError:
        tail = self.output() if self.output else ""
        shown = f"; last output:\n{tail}" if tail else ""
        return ProcessFailedError(f"{reason} while waiting for {self.what}{shown}")

    def give_up_if_failed(self) -> None:
        reason = self.failed() if self.failed else None
        if reason:
            raise self.error(reason)

    def give_up_if_late(self) -> None:
        if time.monotonic() >= self.deadline:
            raise self.error(f"timed out after {self.timeout:g}s")


def wait_until(
    check: Callable[[], T],
    what: str,
    timeout: float,
    *,
    interval: float = 0.05,
    output: Output | None = None,
    failed: Failed | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    ``failed`` is asked first on every round so that a dead process fails the wait at once
    instead of at the deadline; exceptions in ``ignore`` (a refused connection) count as
    "not yet". On timeout or failure, raises :class:`ProcessFailedError` naming ``what`` with
    the ``output`` tail.
    """
    poll = _Poll(what, timeout, interval, output, failed, ignore)
    while True:
        poll.give_up_if_failed()
        try:
            result = check()
        except poll.ignore:
            result = None  # type: ignore[assignment]
        if result:
            return result
        poll.give_up_if_late()
        time.sleep(interval)


async def wait_until_async(check: Callable[[], T | Awaitable[T]], what: str, timeout: float, **options: Any) -> T:
    """:func:`wait_until` for a running event loop (same options); ``check`` may be a coroutine function."""
    poll = _Poll(what, timeout, **options)
    while True:
        poll.give_up_if_failed()
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except poll.ignore:
            result = None
        if result:
            return result  # type: ignore[return-value]
        poll.give_up_if_late()
        await asyncio.sleep(poll.interval)


def terminate(process: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """Stop ``process`` and reap it; returns its exit code (None if there was no process)."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...)."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False
