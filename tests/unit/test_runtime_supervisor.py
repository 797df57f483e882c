"""Process supervision with real processes: prefixed output, readiness, and no orphan on stop."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from services.common.metrics_server import start_metrics_server
from services.runtime.processes import ProcessFailedError, descendants, pid_alive, wait_until, wait_until_async
from services.runtime.supervisor import (
    CrashLoopError,
    ManagedProcess,
    ProcessSpec,
    RestartPolicy,
    Supervisor,
    file_exists,
    http_ok,
)

# A parent that prints, starts a child in its own group and a grandchild in a new session
# (escaping the process group, like a transcriber started with start_new_session), then waits.
TREE = r"""
import subprocess, sys, time
print("hello from the parent", flush=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
open(sys.argv[1], "w").write("ready")
time.sleep(300)
"""

# Ignores SIGTERM: stop() must escalate to SIGKILL.
STUBBORN = r"""
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write("ready")
time.sleep(300)
"""


def _wait_gone(pids: set[int], timeout: float = 10) -> set[int]:
    with contextlib.suppress(ProcessFailedError):
        wait_until(lambda: not any(pid_alive(p) for p in pids), "the processes to exit", timeout)
    return {p for p in pids if pid_alive(p)}


def test_stop_kills_the_whole_tree_including_children_that_left_the_group(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    ready = tmp_path / "ready"
    supervisor = Supervisor(sink=lambda name, line: lines.append((name, line)), log_dir=tmp_path / "logs")
    process = supervisor.start(
        ProcessSpec("tree", [sys.executable, "-c", TREE, str(ready)], ready=file_exists(ready), ready_timeout=20)
    )
    wait_until(lambda: len(descendants(process.pid)) >= 2, "the child and the grandchild", 10)
    tree = {process.pid, *descendants(process.pid)}
    assert len(tree) == 3
    supervisor.stop_all()
    assert _wait_gone(tree) == set()
    assert ("tree", "hello from the parent") in lines
    assert "hello from the parent" in (tmp_path / "logs" / "tree.log").read_text()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = ProcessSpec(
        "stubborn", [sys.executable, "-c", STUBBORN, str(ready)], ready=file_exists(ready), stop_timeout=0.5
    )
    process = ManagedProcess(spec, sink=lambda name, line: None)
    process.start()
    process.wait_ready()
    pid = process.pid
    process.stop()
    assert _wait_gone({pid}) == set()
    assert process.returncode == -9


def test_a_process_that_exits_before_ready_fails_with_its_output(tmp_path: Path) -> None:
    spec = ProcessSpec(
        "broken",
        [sys.executable, "-c", "print('cannot bind port 1234'); raise SystemExit(3)"],
        ready=lambda: False,
    )
    supervisor = Supervisor(sink=lambda name, line: None)
    with pytest.raises(ProcessFailedError, match="status 3") as failure:
        supervisor.start(spec)
    assert "cannot bind port 1234" in str(failure.value)
    supervisor.stop_all()


def test_wait_until_names_what_it_waited_for_and_shows_the_output() -> None:
    with pytest.raises(ProcessFailedError, match=r"timed out after 0.2s while waiting for the moon") as late:
        wait_until(lambda: False, "the moon", 0.2, output=lambda: "no moon tonight")
    assert "no moon tonight" in str(late.value)
    with pytest.raises(ProcessFailedError, match="server exited with status 1 while waiting for it"):
        wait_until(lambda: False, "it", 60, failed=lambda: "server exited with status 1")
    assert wait_until(iter([0, None, 7]).__next__, "a value", 5, interval=0.001) == 7


async def test_wait_until_async_awaits_a_coroutine_check() -> None:
    answers = iter([False, "", "ready"])

    async def check() -> str | bool:
        return next(answers)

    assert await wait_until_async(check, "an answer", 5, interval=0.001) == "ready"


def test_http_health_check_against_the_metrics_exporter() -> None:
    server = start_metrics_server(0, host="127.0.0.1")
    assert server is not None
    try:
        assert http_ok(server.url)()
    finally:
        server.stop()
    assert not http_ok(server.url, timeout=0.2)()


def test_metrics_exporter_is_off_without_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBESCRIBE_METRICS_PORT", raising=False)
    assert start_metrics_server() is None


def _watch_until(supervisor: Supervisor, check, what: str, timeout: float = 20) -> None:
    def round_then_check() -> bool:
        supervisor.watch()
        return check()

    wait_until(round_then_check, what, timeout, interval=0.02)


def test_a_killed_process_is_restarted_after_its_backoff_with_the_same_spec(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    policy = RestartPolicy(initial_backoff_s=0.3, max_backoff_s=1.0)
    supervisor = Supervisor(sink=lambda name, line: None, policy=policy)
    spec = ProcessSpec(
        "sleeper",
        [sys.executable, "-c", "import sys, time; open(sys.argv[1], 'w').write('ready'); time.sleep(300)", str(ready)],
        ready=file_exists(ready),
        prepare=lambda: ready.unlink(missing_ok=True),
    )
    try:
        process = supervisor.start(spec)
        first = process.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not process.running, "the kill to land", 10)
        assert supervisor.watch() == []  # noticed, but the backoff has not passed
        assert not ready.exists() or process.exited_at is not None
        _watch_until(supervisor, lambda: process.running and ready.exists(), "the restart")
        assert process.pid != first and process.restarts == 1 and process.crashes == 1
        assert policy.backoff(1) == 0.3 and policy.backoff(3) == 1.0  # doubles, then capped
    finally:
        supervisor.stop_all()


def test_a_crash_loop_gives_up_after_max_restarts_naming_the_log(tmp_path: Path) -> None:
    policy = RestartPolicy(initial_backoff_s=0.05, max_backoff_s=0.1, max_restarts=3)
    supervisor = Supervisor(sink=lambda name, line: None, log_dir=tmp_path, policy=policy)
    spec = ProcessSpec("crasher", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"])
    try:
        process = supervisor.start(spec)
        with pytest.raises(
            CrashLoopError, match=r"crasher keeps crashing \(exit 3, 3 restarts in a row\).*crasher.log"
        ):
            _watch_until(supervisor, lambda: False, "a crash loop")
        assert process.restarts == 3
    finally:
        supervisor.stop_all()
