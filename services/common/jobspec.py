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
        return sum(r.duration_s or 0.0 for r in self.recordings)


def parse_job(data: bytes | str) -> TranscriptionJob:
    """A stored spec, without the fields this transcriber does not know (logged once and counted).

    Malformed specs raise ``ValueError`` (pydantic's ``ValidationError`` is one): the transcriber
    exits 1 and the dispatcher retries the recordings.
    """
    job, unknown = validate_tolerant(TranscriptionJob, json.loads(data))
    report_unknown_fields(JOB_SPEC, unknown, "kubescribe/dispatcher")
    return job
