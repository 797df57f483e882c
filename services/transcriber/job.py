"""Run one transcription job: every recording of the spec gets a durable outcome.

Per recording: skip it when its status already has an outcome (a retried job never transcribes
twice) or names another job (an orphaned process never races its replacement); otherwise
stream the audio to a temp file, transcribe, store the ``Transcript``, publish
``TranscriptReady``, and only then mark the status transcribed. "Transcribed" tells the
dispatcher that the recording needs nothing more from any job, so it must never be visible
before the event is in the stream: a kill between the two would lose the event for good, while
a kill after the publish only re-runs the recording, whose event id is fixed. One undecodable
or missing recording fails alone (``report_failure`` at stage ``transcribe``); the others go on.

A chunk of a split recording (``JobRecording.chunk``) is run by :mod:`services.transcriber.chunks`
instead, and the job stores and publishes only when that chunk completed the set (the merge).
Chunks skip the "names another job" check: the chunks of one recording run in several jobs at
once by design, and their writes are idempotent (results by key, done-set by compare-and-set).

``TranscriptReady`` ids are derived from the recording id, so a re-publish after a crash (or a
retried job) is dropped by JetStream's duplicate window and deduped by consumers on ``id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from opentelemetry import trace

from services.common.documents import Transcript
from services.common.errors import PermanentError
from services.common.events import Stage, TranscriptReady
from services.common.ids import fixed_event_id
from services.common.jobspec import JobRecording, TranscriptionJob
from services.common.messaging import publish_event, report_failure
from services.common.status import RecordingStage, StatusStore
from services.common.storage import put_bytes
from services.common.telemetry import StageSpan, record_span
from services.common.tombstones import is_deleted, status_for_update
from services.common.topology import TRANSCRIPTS_BUCKET
from services.transcriber.audio import decoding_options, span_attributes, transcription_span
from services.transcriber.chunks import run_chunk
from services.transcriber.engine import Engine

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/transcriber"
_DONE = (RecordingStage.transcribed, RecordingStage.summarizing, RecordingStage.summarized, RecordingStage.failed)


@dataclass
class JobOutcome:
    transcribed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def run_job(
    js: JetStreamContext, job: TranscriptionJob, engine: Engine, *, started_ns: int | None = None
) -> JobOutcome:
    """Process every recording of ``job``; exceptions other than per-recording failures propagate
    (the process then exits non-zero and the dispatcher retries what is unfinished).

    ``started_ns`` is when this process was handed the job (process start for a Job's pod, the
    job id arriving on stdin for a pre-spawned local process). The stage spans tile the
    recording's timeline from there: ``model_load`` runs from ``started_ns`` to the model being
    ready (near zero when it was preloaded while the slot was busy), ``job_wait`` covers the
    recordings ahead in a packed job, then ``transcription``.
    """
    store = await StatusStore.open(js)
    outcome = JobOutcome()
    model = await asyncio.to_thread(engine.load, job.model)
    load_start, load_end = engine.load_times[model]
    # From the hand-off on, everything until the model is ready (imports included) is model_load.
    span_start = started_ns if started_ns is not None else load_start
    model_ready_ns = max(load_end, span_start, time.time_ns())
    for recording in job.recordings:
        record_span(
            StageSpan.MODEL_LOAD,
            start_ns=span_start,
            end_ns=model_ready_ns,
            parent=recording.traceparent,
            attributes={**span_attributes(job, recording), "kubescribe.model_preloaded": load_end <= span_start},
        )
    for recording in job.recordings:
        turn_ns = time.time_ns()
        if turn_ns - model_ready_ns > 1_000_000:
            record_span(
                StageSpan.JOB_WAIT,
                start_ns=model_ready_ns,
                end_ns=turn_ns,
                parent=recording.traceparent,
                attributes=span_attributes(job, recording),
            )
        status, deleted = await status_for_update(js, store, recording.recording_id)  # finish() writes it next
        if (status is not None and status.stage in _DONE) or deleted:  # done, or deleted before its turn
            outcome.skipped.append(recording.recording_id)
            continue
        if recording.chunk is None and status is not None and status.job_id not in (None, job.job_id):
            logger.warning("skipping %s: it now belongs to job %s", recording.recording_id, status.job_id)
            outcome.skipped.append(recording.recording_id)
            continue
        try:
            if recording.chunk is not None:
                merged = await run_chunk(js, store, job, recording, engine, model)
                if merged is not None:
                    await finish(js, store, job, recording, merged, wall_s=merged.processing_s)
            else:
                await _transcribe_one(js, store, job, recording, engine, model)
            outcome.transcribed.append(recording.recording_id)
        except PermanentError as exc:
            await report_failure(
                js,
                stage=Stage.transcribe,
                reason=f"recording {recording.recording_id}: {exc}",
                retryable=False,
                source=SOURCE,
                recording_id=recording.recording_id,
                attempts=job.attempt,
                error=exc,
                job_id=job.job_id,
                tenant=recording.tenant,
            )
            outcome.failed.append(recording.recording_id)
    return outcome


async def _transcribe_one(
    js: JetStreamContext,
    store: StatusStore,
    job: TranscriptionJob,
    recording: JobRecording,
    engine: Engine,
    model: str,
) -> None:
    async with transcription_span(js, recording, span_attributes(job, recording)) as (span, path):
        wall = time.perf_counter()
        result = await asyncio.to_thread(engine.transcribe, path, model=job.model, **decoding_options(recording))
        span.set_attribute("kubescribe.audio_s", result.audio_s)
        span.set_attribute("kubescribe.cpu_s", result.cpu_s)
        transcript = Transcript(
            recording_id=recording.recording_id,
            text=result.text,
            segments=result.segments,
            language=result.language,
            model=model,
            audio_s=result.audio_s,
            processing_s=result.processing_s,
            job_id=job.job_id,
        )
        await finish(js, store, job, recording, transcript, wall_s=time.perf_counter() - wall)
        span.set_status(trace.StatusCode.OK)


async def finish(
    js: JetStreamContext,
    store: StatusStore,
    job: TranscriptionJob,
    recording: JobRecording,
    transcript: Transcript,
    *,
    wall_s: float,
) -> None:
    """Store the recording's transcript, publish its one ``TranscriptReady``, then mark it
    transcribed (in that order: see the module docstring); nothing at all when the recording was
    deleted meanwhile (its tombstone is checked last).

    The summarizer may take the event before the status says transcribed: its own status writes
    carry the transcript reference, and stages never move backwards, so the late write only adds
    the transcriber's metrics."""
    if await is_deleted(js, recording.recording_id):
        return
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, recording.recording_id, transcript.model_dump_json().encode())
    await _publish_ready(js, _ready_event(transcript, ref, recording))
    await store.advance(
        recording.recording_id,
        RecordingStage.transcribed,
        transcript=ref,
        job_id=job.job_id,
        metrics={
            "audio_s": transcript.audio_s,
            "processing_s": transcript.processing_s,
            "transcribe_wall_s": wall_s,
            "word_count": float(len(transcript.text.split())),
        },
    )


def _ready_event(transcript: Transcript, ref, recording: JobRecording) -> TranscriptReady:
    return TranscriptReady(
        id=fixed_event_id("transcript.ready", recording.recording_id),
        source=SOURCE,
        recording_id=recording.recording_id,
        tenant=recording.tenant,
        priority=recording.priority,
        transcript=ref,
        job_id=transcript.job_id,
        model=transcript.model,
        language=transcript.language,
        audio_s=transcript.audio_s,
        processing_s=transcript.processing_s,
        word_count=len(transcript.text.split()),
    )


PUBLISH_RETRY_S = 30.0
"""How long a TranscriptReady publish is retried before the job gives up (and exits non-zero, so
the dispatcher retries it): a JetStream leader election costs a few seconds of timeouts on a
cluster, and riding through it is cheaper than re-running the recording."""


async def _publish_ready(js: JetStreamContext, event: TranscriptReady) -> None:
    """Publish, retrying timeouts and "no responders" with the same ``Nats-Msg-Id`` (deduplicated)."""
    deadline = time.monotonic() + PUBLISH_RETRY_S
    while True:
        try:
            await publish_event(js, event)
            return
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise
            logger.info("TranscriptReady of %s not acknowledged (%s); retrying", event.recording_id, exc)
            await asyncio.sleep(0.5)
