"""Transcription jobs and their states: what the dispatcher plans and what a backend reports.

No broker or Kubernetes imports here. A job is one run of the transcriber entrypoint over one
or more recordings with one model; the spec is stored in the ``jobs`` KV bucket (key = job id)
so that a subprocess and a pod read it the same way (``python -m services.transcriber --job ID``).

The states and events a backend reports are defined here; the backend protocol itself is
:class:`services.dispatcher.backends.base.JobBackend` (the backends import this module, never
the other way round).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

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


class JobState(StrEnum):
    """States a backend reports, in the order a healthy job passes them."""

    queued = "queued"  # created, waiting for admission (Kueue) or a free slot (local)
    admitted = "admitted"  # quota reserved / slot granted
    running = "running"  # the transcriber process or pod started
    succeeded = "succeeded"  # exited 0: every recording has a durable outcome
    failed = "failed"  # crashed, killed, or exceeded its deadline: unfinished recordings retry
    evicted = "evicted"  # preempted or evicted by Kueue: requeue without counting an attempt


TERMINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.evicted})


class JobEvent(BaseModel):
    """A state change of one job, as observed by its backend."""

    job_id: str
    state: JobState
    at: datetime = Field(default_factory=utcnow)
    reason: str | None = None
    exit_code: int | None = None
