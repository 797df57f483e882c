"""``kubescribe demo``: the bundled samples through a running stack, over the public HTTP API.

The engine knows nothing about the console: it reports to the project's one
:class:`~services.common.progress.Progress` (``on_sent`` when a sample is accepted, ``on_stage``
as it moves, ``on_result`` when it ends), and the CLI renders that with rich. It talks to ingest exactly as a user would
(``POST /v1/recordings``, then the status, transcript and summary routes) and reads each
recording's per-stage latencies back from the span file.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx

from services.common.progress import NullProgress, Progress
from services.ingest.client import SubmitError, response_reason, upload_file
from services.runtime.trace_view import StageRow, load_spans, missing_stages, spans_for_recording, stage_rows

TERMINAL_STAGES = ("summarized", "failed")


@dataclass(frozen=True)
class Sample:
    """A bundled clip and the text espeak-ng spoke in it."""

    name: str
    path: Path
    text: str


def bundled_samples() -> list[Sample]:
    """The clips shipped in ``services/runtime/samples`` (16 kHz mono WAV + .txt)."""
    root = resources.files("services.runtime") / "samples"
    samples = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".wav"):
            path = Path(str(entry))
            text_path = path.with_suffix(".txt")
            text = text_path.read_text().strip() if text_path.exists() else ""
            samples.append(Sample(name=path.stem, path=path, text=text))
    return samples


@dataclass
class DemoResult:
    """What happened to one sample."""

    sample: Sample
    recording_id: str | None = None
    stage: str = "submitting"
    error: str | None = None
    transcript: str | None = None
    summary: str | None = None
    stages: list[StageRow] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.stage == "summarized" and self.error is None and self.summary is not None


async def _submit(client: httpx.AsyncClient, result: DemoResult) -> None:
    accepted = await upload_file(client, result.sample.path)
    result.recording_id = accepted["id"]
    result.stage = "received"


async def _follow(
    client: httpx.AsyncClient, result: DemoResult, progress: Progress[DemoResult], deadline: float, poll_s: float
) -> None:
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/recordings/{result.recording_id}")
        if response.status_code == 200:
            body = response.json()
            stage = body.get("stage", "unknown")
            if stage != result.stage:
                result.stage = stage
                progress.on_stage(result.sample.name, stage)
            if stage in TERMINAL_STAGES:
                if stage == "failed":
                    result.error = f"failed at {body.get('error_stage')}: {body.get('error')}"
                return
        await asyncio.sleep(poll_s)
    result.error = f"not finished after the timeout (last stage: {result.stage})"


async def _fetch_results(client: httpx.AsyncClient, result: DemoResult) -> None:
    transcript = await client.get(f"/v1/recordings/{result.recording_id}/transcript")
    if transcript.status_code == 200:
        result.transcript = transcript.json().get("text", "").strip()
    summary = await client.get(f"/v1/recordings/{result.recording_id}/summary")
    if summary.status_code == 200:
        result.summary = summary.json().get("text", "").strip()
    elif result.error is None:
        result.error = f"summary unavailable: HTTP {summary.status_code}: {response_reason(summary)}"


async def wait_for_stages(span_file: Path, recording_id: str, *, timeout: float = 3.0) -> list[StageRow]:
    """The recording's stage rows, waiting briefly for the last batch of spans to be flushed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stage_rows(spans_for_recording(load_spans(span_file), recording_id), recording_id)
        if not missing_stages(rows) or time.monotonic() >= deadline:
            return rows
        await asyncio.sleep(0.2)


async def _one(
    client: httpx.AsyncClient,
    result: DemoResult,
    progress: Progress[DemoResult],
    span_file: Path | None,
    deadline: float,
    poll_s: float,
) -> DemoResult:
    started = time.monotonic()
    try:
        await _submit(client, result)
        progress.on_sent(result.sample.name, 0.0)
        await _follow(client, result, progress, deadline, poll_s)
        if result.recording_id:
            await _fetch_results(client, result)
            if span_file is not None:
                result.stages = await wait_for_stages(span_file, result.recording_id)
    except (httpx.HTTPError, SubmitError, RuntimeError, ValueError, KeyError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.elapsed_s = time.monotonic() - started
    progress.on_result(result)
    return result


async def run_samples(
    ingest_url: str,
    samples: list[Sample],
    *,
    progress: Progress[DemoResult] | None = None,
    span_file: Path | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 0.25,
    headers: dict[str, str] | None = None,
) -> list[DemoResult]:
    """Submit every sample at once and follow each to its summary (or its failure)."""
    progress = progress or NullProgress()
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=ingest_url, timeout=30.0, headers=headers) as client:
        results = [DemoResult(sample=s) for s in samples]
        return list(await asyncio.gather(*(_one(client, r, progress, span_file, deadline, poll_s) for r in results)))
