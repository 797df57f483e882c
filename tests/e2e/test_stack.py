"""The whole embedded stack as processes, with the simulator LLM: the issue's end-to-end checks.

Ten recordings over HTTP all end in ``SummaryReady``; the span file holds one connected trace
per recording with every stage, whose stage spans add up to the end-to-end time; and SIGTERM to
``kubescribe up`` leaves no process behind while the JetStream state survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from services.common.events import SummaryReady
from services.common.topology import SUMMARY_READY
from services.runtime.demo import bundled_samples
from services.runtime.processes import (
    ProcessFailedError,
    descendants,
    exited,
    free_port,
    pid_alive,
    wait_until,
    wait_until_async,
)
from services.runtime.trace_view import (
    check_trace,
    load_spans,
    missing_stages,
    spans_by_recording,
    stage_rows,
    stage_sum,
)

pytestmark = pytest.mark.slow

RECORDINGS = 10


async def _upload(client: httpx.AsyncClient, path: Path) -> str:
    response = await client.post("/v1/recordings", files={"file": (path.name, path.read_bytes(), "audio/wav")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_ten_recordings_end_in_summary_ready_with_connected_traces(embedded_stack) -> None:
    stack = embedded_stack
    samples = bundled_samples()
    nc = await nats.connect(stack.nats_url)
    seen: dict[str, SummaryReady] = {}

    async def on_summary(msg) -> None:
        event = SummaryReady.model_validate_json(msg.data)
        seen[event.recording_id] = event

    await nc.subscribe(SUMMARY_READY, cb=on_summary)
    try:
        async with httpx.AsyncClient(base_url=stack.ingest_url, timeout=30) as client:
            ids = await asyncio.gather(*(_upload(client, samples[i % len(samples)].path) for i in range(RECORDINGS)))
            assert len(set(ids)) == RECORDINGS
            with contextlib.suppress(ProcessFailedError):  # the assertion below names the missing ones
                await wait_until_async(lambda: set(ids) <= set(seen), "every SummaryReady", 240, interval=0.5)
            stages = {rid: (await client.get(f"/v1/recordings/{rid}")).json() for rid in ids}
    finally:
        await nc.close()
    missing = {rid: (stages[rid]["stage"], stages[rid].get("error")) for rid in ids if rid not in seen}
    assert not missing, f"no SummaryReady for {missing}"
    assert all(stages[rid]["stage"] == "summarized" for rid in ids)

    # Spans are exported in batches every 200 ms: wait until each trace has its final span.
    def every_trace_complete() -> bool:
        nonlocal traces
        traces = spans_by_recording(load_spans(stack.span_file))
        return all(any(s.name == "total" for s in traces.get(rid, ())) for rid in ids)

    traces: dict = {}
    with contextlib.suppress(ProcessFailedError):  # the checks below say what is missing
        await wait_until_async(every_trace_complete, "the final span of every trace", 15, interval=0.25)

    problems, sums = [], []
    for rid in ids:
        spans = traces.get(rid, [])
        rows = stage_rows(spans, rid)
        check = check_trace(spans)
        if not check.connected:
            problems.append(f"{rid}: not one connected trace (traces {check.trace_ids}, roots {check.roots})")
        if missing_stages(rows):
            problems.append(f"{rid}: no span for {missing_stages(rows)}")
        parts, total = stage_sum(rows)
        if not total or abs(parts - total) > 0.10 * total:
            breakdown = ", ".join(f"{r.stage}={r.duration_s:.3f}" for r in rows)
            sums.append(f"{rid}: stages sum to {parts:.3f}s, total {total or 0:.3f}s: {breakdown}")
    assert not problems, "\n".join(problems)
    assert not sums, "stage spans do not add up to the end-to-end time within 10 %:\n" + "\n".join(sums)


# ---------------------------------------------------------------- kubescribe up


def _stack_processes(marker: str) -> set[int]:
    """Every process whose environment names our NATS URL: the stack's children, at any depth."""
    key, _, value = marker.partition("=")
    found = set()
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get(key) == value and pid_alive(process.pid):
                found.add(process.pid)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


class _Up:
    """``kubescribe up`` as a real child process, read line by line until it says it is ready."""

    def __init__(self, data_dir: Path, nats_port: int, ingest_port: int) -> None:
        command = [
            sys.executable, "-m", "services.cli", "up",
            "--data-dir", str(data_dir), "--llm", "sim",
            "--nats-port", str(nats_port), "--llm-port", "0", "--ingest-port", str(ingest_port),
            "--no-auth",  # auth is on by default (tests/security covers it); this test is about SIGTERM
        ]  # fmt: skip
        env = {**os.environ, "KUBESCRIBE_API_TOKEN": "", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines: list[str] = []

    def wait_ready(self, timeout: float = 120) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        os.set_blocking(stdout.fileno(), False)

        def said_ready() -> bool:
            while line := stdout.readline():
                self.lines.append(line.rstrip())
                if line.startswith("ready: Ctrl-C to stop"):
                    return True
            return False

        def tail() -> str:
            said_ready()  # what it printed before it exited
            return "\n".join(self.lines[-60:])

        try:
            wait_until(said_ready, "kubescribe up", timeout, output=tail, failed=exited(self.process, "kubescribe up"))
        except ProcessFailedError as exc:
            self.kill()
            pytest.fail(str(exc))

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _wait_stage(url: str, rid: str, stages: tuple[str, ...], timeout: float = 120) -> str:
    stage = "?"

    def reached() -> bool:
        nonlocal stage
        response = httpx.get(f"{url}/v1/recordings/{rid}", timeout=10)
        if response.status_code == 200:
            stage = response.json()["stage"]
        return stage in stages

    with contextlib.suppress(ProcessFailedError):  # the caller asserts on the stage it got to
        wait_until(reached, f"{rid} to reach {stages}", timeout, interval=0.1)
    return stage


def test_up_sigterm_leaves_no_process_behind_and_state_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    nats_port, ingest_port = free_port(), free_port()
    marker = f"KUBESCRIBE_NATS_URL=nats://127.0.0.1:{nats_port}"
    url = f"http://127.0.0.1:{ingest_port}"
    sample = bundled_samples()[0].path

    up = _Up(data_dir, nats_port, ingest_port)
    try:
        up.wait_ready()
        assert any(url in line for line in up.lines), "kubescribe up must print the ingest URL"
        assert any(f"nats://127.0.0.1:{nats_port}" in line for line in up.lines), "and the NATS URL"
        first = httpx.post(f"{url}/v1/recordings", files={"file": (sample.name, sample.read_bytes(), "audio/wav")})
        first_id = first.json()["id"]
        assert _wait_stage(url, first_id, ("summarized", "failed")) == "summarized"
        # A second recording in flight: SIGTERM arrives while its transcriber may be running.
        second = httpx.post(f"{url}/v1/recordings", files={"file": (sample.name, sample.read_bytes(), "audio/wav")})
        second_id = second.json()["id"]
        _wait_stage(url, second_id, ("running", "transcribed", "summarizing", "summarized"), timeout=60)
        tree = descendants(up.process.pid) | _stack_processes(marker)
        assert len(tree) >= 5, f"expected nats, llm, ingest, dispatcher and summarizer, found {tree}"
        status = up.terminate()
    finally:
        up.kill()
    assert status == 0, "\n".join(up.lines[-40:])
    with contextlib.suppress(ProcessFailedError):  # the assertion names what is left
        wait_until(lambda: not any(pid_alive(p) for p in tree) and not _stack_processes(marker), "no process", 10)
    left = {p for p in tree if pid_alive(p)} | _stack_processes(marker)
    assert not left, f"processes left after SIGTERM: {[_cmdline(p) for p in left]}"

    # Same data dir, new processes: JetStream file storage kept every recording.
    again = _Up(data_dir, nats_port, ingest_port)
    try:
        again.wait_ready()
        response = httpx.get(f"{url}/v1/recordings/{first_id}", timeout=10)
        assert response.status_code == 200 and response.json()["stage"] == "summarized"
        assert httpx.get(f"{url}/v1/recordings/{first_id}/summary", timeout=10).status_code == 200
        # The recording interrupted by the shutdown is not lost: it completes after the restart.
        assert _wait_stage(url, second_id, ("summarized", "failed"), timeout=120) == "summarized"
        assert json.loads(httpx.get(f"{url}/v1/recordings/{second_id}/summary", timeout=10).text)["text"]
        assert again.terminate() == 0
    finally:
        again.kill()


def test_status_and_trace_commands_show_every_stage(embedded_stack) -> None:
    stack = embedded_stack
    sample = bundled_samples()[1].path
    response = httpx.post(
        f"{stack.ingest_url}/v1/recordings", files={"file": (sample.name, sample.read_bytes(), "audio/wav")}
    )
    rid = response.json()["id"]
    assert _wait_stage(stack.ingest_url, rid, ("summarized", "failed")) == "summarized"
    env = {**os.environ, "KUBESCRIBE_NATS_URL": stack.nats_url, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )

    status = run("status", rid)
    assert status.returncode == 0, status.stderr
    for stage in ("received", "queued", "dispatched", "running", "transcribed", "summarizing", "summarized"):
        assert stage in status.stdout

    def traced_fully() -> subprocess.CompletedProcess[str] | None:
        traced = run("trace", rid, "--data-dir", str(stack.data_dir))
        return None if "no span yet" in traced.stdout else traced

    traced = wait_until(traced_fully, f"the spans of {rid}", 10, interval=0.3)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    for stage in ("ingest", "queue_wait", "admission_wait", "model_load", "transcription", "ttft", "total"):
        assert stage in traced.stdout
    assert "not connected" not in traced.stdout

    unknown = run("status", "01JDZ8W3V0R4N8M0Q2K5T7Y9AB")
    assert unknown.returncode == 1 and "unknown recording" in unknown.stdout
    assert "Traceback" not in unknown.stdout + unknown.stderr
