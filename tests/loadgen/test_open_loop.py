"""Open loop: arrivals keep their schedule even when the target is slow.

The target is a real HTTP server on 127.0.0.1 that answers every upload only after a long
sleep; a closed-loop sender would fall behind by that sleep on every request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadgen.make import make_trace
from loadgen.replay import HttpTarget, ReplayOptions, lag_percentile, replay
from services.common.ids import new_id


class SlowIngest(ThreadingHTTPServer):
    """Answers ``POST /v1/recordings`` with 202 after ``delay`` seconds, or with ``status``."""

    daemon_threads = True

    def __init__(self, delay: float, status: int = 202) -> None:
        self.delay, self.status = delay, status
        self.in_flight = self.max_in_flight = self.requests = 0
        self.lock = threading.Lock()
        self.seen_headers: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SlowIngest

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.requests += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            server.seen_headers.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(server.delay)
        body = json.dumps({"id": new_id()} if server.status < 300 else {"detail": "ingest is overloaded"}).encode()
        try:
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (deadline test)
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, *args: object) -> None:
        pass


def serve(delay: float, status: int = 202) -> Iterator[SlowIngest]:
    server = SlowIngest(delay, status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def slow_ingest() -> Iterator[SlowIngest]:
    yield from serve(delay=1.5)


async def test_arrivals_keep_schedule_when_the_target_is_slow(slow_ingest, tmp_path):
    items = make_trace(60, pattern="poisson", rate=20.0, seed=11, audio="tone", duration_s=0.5, tenants=["acme"])
    target = HttpTarget(slow_ingest.url)
    try:
        run = await replay(items, target, options=ReplayOptions(collect=False, cache_dir=tmp_path, deadline_s=60))
    finally:
        await target.aclose()

    assert [r.outcome for r in run.items] == ["accepted"] * 60
    lag_p99 = lag_percentile(run, 0.99)
    assert lag_p99 < 0.050, f"open-loop lag p99 {lag_p99 * 1000:.1f} ms"
    # Each answer took 1.5 s, yet the whole schedule (~3 s) was sent on time: requests overlapped.
    assert slow_ingest.max_in_flight >= 15
    assert max(r.accepted_s - r.sent_s for r in run.items) >= 1.5
    span = run.items[-1].sent_s - run.items[0].sent_s
    assert span == pytest.approx(items[-1].offset_s, abs=0.05)
    headers = slow_ingest.seen_headers[0]
    assert headers["X-Tenant"] == "acme" and headers["Content-Type"] == "audio/wav"
    assert headers["Idempotency-Key"].startswith("loadgen-")


async def test_refusals_are_recorded_with_the_reason(tmp_path):
    for server in serve(delay=0.0, status=503):
        target = HttpTarget(server.url)
        try:
            run = await replay(
                make_trace(3, pattern="burst", audio="tone", duration_s=0.2),
                target,
                options=ReplayOptions(collect=False, cache_dir=tmp_path),
            )
        finally:
            await target.aclose()
    assert {r.outcome for r in run.items} == {"rejected"}
    assert "503" in run.items[0].error and "overloaded" in run.items[0].error


async def test_deadline_stops_a_run_that_cannot_finish(tmp_path):
    for server in serve(delay=5.0):
        target = HttpTarget(server.url)
        started = time.monotonic()
        try:
            run = await replay(
                make_trace(2, pattern="burst", audio="tone", duration_s=0.2),
                target,
                options=ReplayOptions(collect=False, cache_dir=tmp_path, deadline_s=1.0),
            )
        finally:
            await target.aclose()
        assert time.monotonic() - started < 4.0
    assert run.footer.stopped == "deadline"
    assert {r.outcome for r in run.items} == {"timeout"}


async def test_cancelled_replay_keeps_what_it_has(tmp_path):
    for server in serve(delay=0.0):
        target = HttpTarget(server.url)
        items = make_trace(20, pattern="constant", rate=10.0, audio="tone", duration_s=0.2)
        task = asyncio.create_task(
            replay(items, target, options=ReplayOptions(collect=False, cache_dir=tmp_path, return_on_cancel=True))
        )
        await asyncio.sleep(0.55)
        task.cancel()
        run = await task
        await target.aclose()
    assert run.footer.stopped == "interrupted"
    sent = [r for r in run.items if r.sent_s is not None]
    assert 3 <= len(sent) <= 10 and len(run.items) == 20
    assert all(r.outcome == "timeout" and "not sent" in r.error for r in run.items if r.sent_s is None)


async def test_large_recordings_stream_from_disk(tmp_path, monkeypatch):
    import loadgen.replay as engine

    monkeypatch.setattr(engine, "IN_MEMORY_MAX_BYTES", 1000)
    for server in serve(delay=0.0):
        target = HttpTarget(server.url)
        run = await replay(
            make_trace(1, audio="tone", duration_s=1.0),
            target,
            options=ReplayOptions(collect=False, cache_dir=tmp_path),
        )
        await target.aclose()
    assert run.items[0].outcome == "accepted"
    assert server.seen_headers[0]["Content-Length"] == str(44 + 32000)
