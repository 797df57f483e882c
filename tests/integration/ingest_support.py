"""Helpers for the ingest tests: the real app under uvicorn on 127.0.0.1, and store counters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn

from services.common.settings import ApiSettings, IngestSettings, NatsSettings, Settings
from services.common.topology import AUDIO_BUCKET, AUDIO_STREAM
from services.ingest.api import create_app
from services.runtime.processes import exited, file_tail, free_port, wait_until, wait_until_async
from services.runtime.supervisor import http_ok


def make_settings(
    nats: NatsSettings, *, max_upload_bytes: int = 64 << 20, token: str | None = None, **ingest: object
) -> Settings:
    settings = Settings()
    port = free_port()
    settings.nats = nats  # type: ignore[misc]  # cached_property: assigning overrides it
    # Recordings of every test share the session's NATS and tenant, and no dispatcher finishes them:
    # the per-tenant in-flight limit is tested where it is set (tests/security).
    ingest.setdefault("max_in_flight", 1_000_000)
    settings.ingest = IngestSettings(port=port, max_upload_bytes=max_upload_bytes, **ingest)  # type: ignore[misc,arg-type]
    settings.api = ApiSettings(api_token=token)  # type: ignore[misc]
    return settings


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings, nc) -> AsyncIterator[str]:
    """Serve the app on the test's event loop; yields its base URL and stops it afterwards."""
    config = uvicorn.Config(
        create_app(settings, nc=nc),
        host="127.0.0.1",
        port=settings.ingest.port,
        log_level="warning",
        lifespan="on",
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    await wait_until_async(lambda: server.started or task.done(), "the ingest server", 30, interval=0.005)
    if task.done():
        await task  # it could not start: its exception
    try:
        yield f"http://127.0.0.1:{settings.ingest.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def store_counts(js) -> tuple[int, int]:
    """(messages in the audio Object Store's stream, events in the AUDIO stream): nothing left behind
    means both are unchanged."""
    objects = (await js.stream_info(f"OBJ_{AUDIO_BUCKET}")).state.messages
    events = (await js.stream_info(AUDIO_STREAM)).state.messages
    return objects, events


@contextlib.contextmanager
def ingest_subprocess(nats_url: str, tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m services.ingest.app`` as a child process (like a pod); yields it and its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "KUBESCRIBE_NATS_URL": nats_url,
        "KUBESCRIBE_INGEST_PORT": str(port),
        "KUBESCRIBE_TELEMETRY_SPAN_FILE": str(tmp_path / "spans.jsonl"),
        "KUBESCRIBE_INGEST_MAX_IN_FLIGHT": "1000000",  # the session's tenant is shared: see make_settings
        **env,
    }
    if "KUBESCRIBE_API_TOKEN" not in env:
        environment.pop("KUBESCRIBE_API_TOKEN", None)
    log_path = tmp_path / f"ingest-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ingest.app"], env=environment, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            ready = http_ok(f"{base}/readyz")
            wait_until(ready, "ingest", 30, failed=exited(process, "ingest"), output=file_tail(log_path))
            yield process, base
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
