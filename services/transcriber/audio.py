"""What every transcription of a recording starts with, whole or one chunk of it.

Its ``transcription`` span under the recording's trace, its audio downloaded from the Object Store
into a private temporary directory (removed afterwards, whatever happens), and the per-recording
decoding options the OpenAI-compatible API passes through the event. One place, so that a chunk
of a split recording is traced, fetched and decoded exactly as a whole recording is.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from opentelemetry.trace import Span

from services.common.jobspec import JobRecording, TranscriptionJob
from services.common.storage import get_to_file
from services.common.telemetry import StageSpan, extract_context, tracer


def span_attributes(job: TranscriptionJob, recording: JobRecording) -> dict[str, object]:
    """Which recording, tenant, job and model a transcription span is about (a chunk adds its window)."""
    attributes: dict[str, object] = {
        "kubescribe.recording_id": recording.recording_id,
        "kubescribe.job_id": job.job_id,
        "kubescribe.tenant": recording.tenant,
        "kubescribe.model": job.model,
        "kubescribe.profile": job.profile,
    }
    if recording.chunk is not None:
        attributes["kubescribe.chunk_index"] = recording.chunk.index
        attributes["kubescribe.chunk_count"] = recording.chunk.count
    return attributes


@contextlib.asynccontextmanager
async def transcription_span(
    js: JetStreamContext, recording: JobRecording, attributes: dict[str, Any]
) -> AsyncIterator[tuple[Span, Path]]:
    """The recording's ``transcription`` span (current while the body runs) and its audio file."""
    parent = extract_context({"traceparent": recording.traceparent} if recording.traceparent else None)
    with (
        tracer().start_as_current_span(StageSpan.TRANSCRIPTION, context=parent, attributes=attributes) as span,
        tempfile.TemporaryDirectory(prefix="kubescribe-") as tmp,
    ):
        path = Path(tmp) / "audio"
        await get_to_file(js, recording.audio, path)
        yield span, path


def decoding_options(recording: JobRecording) -> dict[str, Any]:
    """The engine's keyword arguments for ``recording``: its language and the OpenAI API's options."""
    return {
        "language": recording.language,
        "word_timestamps": bool(recording.word_timestamps),
        "prompt": recording.prompt,
        "temperature": recording.temperature,
    }
