"""One chunk of a split recording: transcribe its window, store it, and merge when it was the last.

A chunk is an ordinary work item of an ordinary job (``JobRecording.chunk`` set), so the local
and the Kubernetes backends run it unchanged. At-least-once safety, step by step:

1. The chunk result goes to the ``transcripts`` Object Store under :func:`~services.transcriber.merge.chunk_key`
   (recording id + plan + index): a retried or redelivered chunk overwrites it, never adds one.
2. Its index is added, by compare-and-set, to the recording status's ``chunks_done[count]``
   (a set per plan: a re-planned recording with another chunk count starts its own set).
3. Whoever finds the set complete while the recording is not yet transcribed merges: reads every
   chunk result once by key, stitches them (:mod:`services.transcriber.merge`) and returns the
   transcript for the job to store and publish. The merge is deterministic and the
   ``TranscriptReady`` id is derived from the recording id, so when two finishers do merge (the
   last chunk retried while its first run was merging), the stream still stores one event.
   A chunk that finds its own index already done skips the transcription but still merges if
   nobody has: a crash between steps 2 and 3 is recovered by the retry.
"""

from __future__ import annotations

import asyncio
import time

from nats.js import JetStreamContext
from opentelemetry import trace

from services.common.documents import Transcript
from services.common.errors import UnsupportedAudioError
from services.common.events import ObjectRef
from services.common.jobspec import ChunkSpec, JobRecording, TranscriptionJob
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import get_bytes, put_bytes
from services.common.telemetry import StageSpan, extract_context, tracer
from services.common.topology import TRANSCRIPTS_BUCKET
from services.transcriber.audio import decoding_options, span_attributes, transcription_span
from services.transcriber.engine import SAMPLE_RATE, Engine, decode
from services.transcriber.merge import ChunkTranscript, chunk_key, merge_chunks
from services.transcriber.window import chunk_window

_MERGED = (RecordingStage.transcribed, RecordingStage.summarizing, RecordingStage.summarized, RecordingStage.failed)


async def run_chunk(
    js: JetStreamContext,
    store: StatusStore,
    job: TranscriptionJob,
    recording: JobRecording,
    engine: Engine,
    model: str,
) -> Transcript | None:
    """Transcribe and record one chunk; the merged transcript when this call completed the set, else None."""
    chunk = recording.chunk
    assert chunk is not None
    status = await store.get(recording.recording_id)
    if status is None or chunk.index not in status.chunks_done.get(str(chunk.count), []):
        await _transcribe_chunk(js, job, recording, chunk, engine, model)
        status = await store.update(recording.recording_id, lambda s: _mark_done(s, chunk))
    if status.stage in _MERGED or sorted(status.chunks_done.get(str(chunk.count), [])) != list(range(chunk.count)):
        return None
    parent = extract_context({"traceparent": recording.traceparent} if recording.traceparent else None)
    with tracer().start_as_current_span(
        StageSpan.MERGE, context=parent, attributes=span_attributes(job, recording)
    ) as span:
        results = [
            ChunkTranscript.model_validate_json(
                await get_bytes(
                    js, ObjectRef(bucket=TRANSCRIPTS_BUCKET, name=chunk_key(recording.recording_id, chunk.count, i))
                )
            )
            for i in range(chunk.count)
        ]
        segments = merge_chunks(results)
        span.set_status(trace.StatusCode.OK)
    return Transcript(
        recording_id=recording.recording_id,
        text=" ".join(s.text for s in segments if s.text).strip(),
        segments=segments,
        language=next((r.language for r in results if r.language), None),
        model=model,
        audio_s=max(r.recording_audio_s for r in results),
        processing_s=sum(r.processing_s for r in results),
        job_id=job.job_id,
    )


def _mark_done(status: RecordingStatus, chunk: ChunkSpec) -> RecordingStatus:
    done = set(status.chunks_done.get(str(chunk.count), []))
    done.add(chunk.index)
    status.chunks_done[str(chunk.count)] = sorted(done)
    return status


async def _transcribe_chunk(
    js: JetStreamContext,
    job: TranscriptionJob,
    recording: JobRecording,
    chunk: ChunkSpec,
    engine: Engine,
    model: str,
) -> None:
    """One ``transcription`` span per chunk, under the recording's trace; the result stored by key."""
    async with transcription_span(js, recording, span_attributes(job, recording)) as (span, path):
        audio = await asyncio.to_thread(decode, path)
        start_s, end_s = await asyncio.to_thread(chunk_window, audio, chunk)
        window = audio[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]
        span.set_attribute("kubescribe.chunk_start_s", start_s)
        span.set_attribute("kubescribe.chunk_end_s", end_s)
        span.set_attribute("kubescribe.audio_s", end_s - start_s)
        began = time.perf_counter()
        segments, language = [], None
        try:
            result = await asyncio.to_thread(
                engine.transcribe_audio, window, model=job.model, offset_s=start_s, **decoding_options(recording)
            )
            segments, language = result.segments, result.language
            span.set_attribute("kubescribe.cpu_s", result.cpu_s)
        except UnsupportedAudioError:
            if len(window) > 0:
                raise
            # the planner over-estimated the duration: this window lies past the end, nothing to say
        result_doc = ChunkTranscript(
            recording_id=recording.recording_id,
            index=chunk.index,
            count=chunk.count,
            window_start_s=start_s,
            window_end_s=end_s,
            recording_audio_s=len(audio) / SAMPLE_RATE,
            segments=segments,
            language=language,
            model=model,
            processing_s=time.perf_counter() - began,
            job_id=job.job_id,
        )
        name = chunk_key(recording.recording_id, chunk.count, chunk.index)
        await put_bytes(js, TRANSCRIPTS_BUCKET, name, result_doc.model_dump_json().encode())
        span.set_status(trace.StatusCode.OK)
