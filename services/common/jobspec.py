"""The transcription job spec: the contract between the dispatcher (which plans and stores it)
and the transcriber (which runs it).

It lives in ``services.common`` because both sides depend on it and neither should import the
other: the dispatcher writes a ``TranscriptionJob`` to the ``jobs`` KV bucket (key = job id)
and ``python -m services.transcriber --job ID`` reads it back, in a subprocess or a pod alike.
Like the events, both models forbid unknown fields so the dispatcher cannot write a spec the
transcriber would not understand.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.common.events import ObjectRef, Priority, utcnow
from services.common.ids import new_id


class JobRecording(BaseModel):
    """One recording inside a job, with what the transcriber needs to process and trace it."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    audio: ObjectRef
    tenant: str = "default"
    priority: Priority = Priority.normal
    duration_s: float | None = None
    language: str | None = None
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
