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

from pydantic import BaseModel, Field

from services.common.events import utcnow
from services.common.jobspec import JobRecording, TranscriptionJob  # noqa: F401 (JobRecording: old import path)


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
