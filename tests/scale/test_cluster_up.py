"""``kubescribe up --nats-cluster 3 --replicas 2`` starts, prints every URL, and rides through
``kill -9`` of any one of its processes (issue 16, item 1).

The real command runs as a subprocess (the way a person runs it), with the simulator LLM on free
ports. Each of its direct children (three nats-servers, the LLM, two of each service) is
SIGKILLed in turn; after each kill a new recording is uploaded (with its Idempotency-Key, retried
as a client would, round-robin over the printed ingest URLs) and must end summarized before the
next kill, while the supervisor brings the killed process back.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from services.ingest.client import SubmitError, upload_with_retry
from services.runtime.processes import ProcessFailedError, wait_until_async
from tests.chaos.support import make_clips

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ENV = {
    "KUBESCRIBE_API_TOKEN": "",
    "KUBESCRIBE_DISPATCHER_ACK_WAIT_S": "6",  # a SIGKILLed replica's messages come back quickly
    "KUBESCRIBE_SUMMARIZER_ACK_WAIT_S": "6",
    "KUBESCRIBE_DISPATCHER_SLOTS": "1",  # two dispatchers on two shared cores
    "KUBESCRIBE_DISPATCHER_MAX_ATTEMPTS": "6",
    "KUBESCRIBE_DISPATCHER_RETRY_BACKOFF_S": "0.5",
    "HF_HUB_OFFLINE": "1",
}
URL = re.compile(r"(ingest|NATS)\s+((?:http|nats)://127\.0\.0\.1:\d+)")


def _describe(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        argv = proc.cmdline()
        if "nats-server" in argv[0]:
            return f"nats-server :{argv[argv.index('-p') + 1]}"
        return " ".join(argv[-2:])
    return "?"


async def _stage(urls: list[str], rid: str) -> str | None:
    for url in urls:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"{url}/v1/recordings/{rid}")
                if response.status_code == 200:
                    return response.json()["stage"]
    return None


def _logs(data: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted((data / "logs").glob("*.log")))


@pytest.fixture
def up(tmp_path: Path):
    """``kubescribe up`` until it printed "ready", then its output so far; SIGTERMed at the end."""
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--llm",
        "sim",
        "--no-auth",
    ]
    argv += ["--nats-port", "0", "--llm-port", "0", "--ingest-port", "0", "--nats-cluster", "3", "--replicas", "2"]
    env = {**os.environ, **ENV, "COLUMNS": "200"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        else:
            pytest.fail("kubescribe up exited before it was ready:\n" + "".join(lines))
        panel = "".join(lines)
        # Keep reading, as a terminal does: with its stdout pipe full, `up` blocks in its next print
        # (a restart message), and so does the supervisor thread that restarts the killed process.
        drain = threading.Thread(target=lambda: lines.extend(proc.stdout), name="drain-up", daemon=True)
        drain.start()
        yield proc, panel, tmp_path / "data"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain is not None:
            drain.join(timeout=10)
        assert proc.returncode == 0, "".join(lines)


async def test_up_with_a_nats_cluster_and_replicas_survives_kill_9_of_any_one_process(up, tmp_path: Path) -> None:
    proc, panel, data = up
    urls = URL.findall(panel)
    ingest = [u for kind, u in urls if kind == "ingest"]
    nats = [u for kind, u in urls if kind == "NATS"]
    assert len(ingest) == 2 and len(nats) == 3, panel
    assert "one JetStream cluster of 3" in panel and "replicas 2 of each" in panel, panel
    clips = make_clips(tmp_path)
    parent = psutil.Process(proc.pid)
    children = sorted(parent.children(), key=lambda p: p.pid)
    assert len(children) == 3 + 1 + 2 * 4, [_describe(c) for c in children]  # nats x3, llm, 4 services x2

    async with httpx.AsyncClient(timeout=30) as http:
        for i, child in enumerate(children):
            name = _describe(child)
            before = {p.pid for p in parent.children()}
            os.kill(child.pid, signal.SIGKILL)
            http.base_url = ingest[i % 2]
            try:
                body = await upload_with_retry(http, clips[i % 4], idempotency_key=f"up-kill-{i}", deadline_s=120)
            except SubmitError as exc:
                pytest.fail(f"upload to {http.base_url} after kill -9 of {name}: {exc}\n{_logs(data)}")

            async def summarized(rid: str = body["id"]) -> bool:
                return await _stage(ingest, rid) == "summarized"

            try:
                await wait_until_async(summarized, f"the recording after killing {name} summarized", 180, interval=0.5)
            except ProcessFailedError:
                stage = await _stage(ingest, body["id"])
                pytest.fail(f"not summarized after kill -9 of {name} (stage {stage})\n{_logs(data)}")

            def restarted(before: set[int] = before, name: str = name) -> bool:
                """A new process of the killed one's kind (another may have been restarted too)."""
                return any(_describe(p) == name for p in parent.children() if p.pid not in before)

            try:
                await wait_until_async(restarted, f"{name} restarted", 60, interval=0.2)
            except ProcessFailedError:
                now = [(p.pid, _describe(p)) for p in parent.children()]
                pytest.fail(f"{name} (pid {child.pid}) not restarted: children {now}\n{_logs(data)}")
    assert proc.poll() is None, "kubescribe up gave up"
