"""Transcription jobs and the backend protocol: what the dispatcher plans and who runs it.

No broker or Kubernetes imports here. A job is one run of the transcriber entrypoint over one
or more recordings with one model; the spec is stored in the ``jobs`` KV bucket (key = job id)
so that a subprocess and a pod read it the same way (``python -m services.transcriber --job ID``).

Backends implement one narrow protocol, like httpx transports implement ``handle_request``:
``submit`` (idempotent by job id), ``watch`` (a stream of state changes), ``cancel``, ``active``
(for reconciliation after a restart) and ``aclose``. The dispatch logic is written once, on top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

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


@runtime_checkable
class JobBackend(Protocol):
    """Runs transcription jobs. Implementations: ``LocalJobBackend``, ``KubernetesJobBackend``."""

    kind: ClassVar[str]

    async def submit(self, job: TranscriptionJob) -> None:
        """Start the job (its spec is already stored). Submitting the same job id twice runs it once."""

    def watch(self) -> AsyncIterator[JobEvent]:
        """State changes of every job this backend knows, in order per job, until ``aclose``."""

    async def cancel(self, job_id: str) -> None:
        """Stop a job; unknown or finished jobs are ignored."""

    async def active(self) -> list[str]:
        """Ids of jobs that are queued or running, so a restarted dispatcher adopts instead of duplicating."""

    async def aclose(self) -> None:
        """Release processes, watches and connections."""


BACKENDS: dict[str, Callable[..., JobBackend]] = {}
"""Registry of backend factories by kind, filled by ``services.dispatcher.backends``."""


def register_backend(kind: str) -> Callable[[Callable[..., JobBackend]], Callable[..., JobBackend]]:
    def decorator(factory: Callable[..., JobBackend]) -> Callable[..., JobBackend]:
        BACKENDS[kind] = factory
        return factory

    return decorator


def create_backend(kind: str, **options: object) -> JobBackend:
    """The backend registered as ``kind``; an unknown kind names the registered ones."""
    from services.common.errors import ConfigurationError

    if kind not in BACKENDS:
        from services.dispatcher.backends import load_backends

        load_backends(kind)
    try:
        factory = BACKENDS[kind]
    except KeyError:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise ConfigurationError(
            f"unknown job backend {kind!r} (KUBESCRIBE_BACKEND); registered backends: {known}"
        ) from None
    return factory(**options)
