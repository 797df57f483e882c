"""The transcription job spec: the contract between the dispatcher (which plans and stores it)
and the transcriber (which runs it).

It lives in ``services.common`` because both sides depend on it and neither should import the
other: the dispatcher writes a ``TranscriptionJob`` to the ``jobs`` KV bucket (key = job id)
and ``python -m services.transcriber --job ID`` reads it back, in a subprocess or a pod alike.
Like the events, both models forbid unknown fields, so the dispatcher cannot construct a spec
with a field nobody declared; and like the event consumers, the transcriber reads a spec as a
tolerant reader (:func:`parse_job`), so a newer dispatcher's added optional field does not fail
every job of an older transcriber image during a rolling upgrade.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.common.events import ObjectRef, Priority, utcnow
from services.common.ids import new_id
from services.common.tolerant import report_unknown_fields, validate_tolerant

JOB_SPEC = "kubescribe.transcription.job"
"""The contract's name in logs and in the ``event_type`` label of the unknown-fields counter."""


class ChunkSpec(BaseModel):
    """One time window of a long recording that the planner split (see ``services.dispatcher.splitting``).

    ``start_s``/``end_s`` are the nominal cuts the planner chose by time; the transcriber widens
    each inner edge by ``overlap_s`` and snaps it to the nearest silence (VAD on its own audio),
    and the merge removes the words the overlap transcribed twice. The first chunk starts at 0 and
    the last ends at the recording's end, whatever its measured length.
    """

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, description="Position of the chunk, from 0.")
    count: int = Field(ge=2, description="How many chunks the recording was split into (one plan).")
    start_s: float = Field(ge=0, description="Nominal start of the window, seconds from the recording's start.")
    end_s: float = Field(gt=0, description="Nominal end of the window, seconds from the recording's start.")
    overlap_s: float = Field(0.0, ge=0, description="Audio each inner edge is widened by, before snapping to silence.")

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


class JobRecording(BaseModel):
    """One recording inside a job, with what the transcriber needs to process and trace it."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    audio: ObjectRef
    tenant: str = "default"
    priority: Priority = Priority.normal
    duration_s: float | None = None
    language: str | None = None
    word_timestamps: bool | None = None
    prompt: str | None = None
    temperature: float | None = None
    """Per-recording decoder options from ``AudioReceived`` (the OpenAI API sets them)."""
    traceparent: str | None = Field(None, description="W3C trace context of the recording's trace.")
    event_id: str | None = Field(None, description="Id of the AudioReceived that asked for it.")
    chunk: ChunkSpec | None = Field(
        None, description="Set when this item is one window of a split long recording; None: the whole recording."
    )

    @property
    def audio_s(self) -> float:
        """Audio this item transcribes: its window for a chunk, else the whole (estimated) duration."""
        if self.chunk is not None:
            return self.chunk.end_s - self.chunk.start_s
        return self.duration_s or 0.0


class TranscriptionJob(BaseModel):
    """A planned job: the unit a backend runs (a subprocess locally, a batch/v1 Job in a cluster)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(default_factory=lambda: new_id().lower())
    """Lower-case ULID: sortable, and valid in a Kubernetes object name."""
    model: str
    profile: str = Field(description="Resource profile, e.g. 'mig-1g.5gb' (a DAS slice) or 'cpu'.")
    recordings: list[JobRecording]
    priority: Priority = Priority.normal
    tenant: str = "default"
    attempt: int = 1
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def audio_s(self) -> float:
        return sum(r.audio_s for r in self.recordings)


def parse_job(data: bytes | str) -> TranscriptionJob:
    """A stored spec, without the fields this transcriber does not know (logged once and counted).

    Malformed specs raise ``ValueError`` (pydantic's ``ValidationError`` is one): the transcriber
    exits 1 and the dispatcher retries the recordings.
    """
    job, unknown = validate_tolerant(TranscriptionJob, json.loads(data))
    report_unknown_fields(JOB_SPEC, unknown, "kubescribe/dispatcher")
    return job
