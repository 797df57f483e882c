"""``JobBackend``: the one protocol the dispatcher drives, and the event stream every backend shares.

Like an httpx transport implements only ``handle_request``, a backend implements ``submit``
(idempotent by job id), ``cancel``, ``active`` (for reconciliation after a restart) and
``aclose``; the dispatch logic is written once, in :mod:`services.dispatcher.consumer`. What
every backend did the same way lives here: the queue of :class:`JobEvent` s that ``watch``
streams until ``aclose`` ends it, and the defaults for the two optional capabilities (``start``
to warm up before the first job, ``free_slots`` to let the planner size jobs to the capacity),
so the dispatcher calls methods instead of probing with ``getattr``.
"""

from __future__ import annotations

import abc
import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import ClassVar

from services.dispatcher.domain import JobEvent, JobState, TranscriptionJob


class JobBackend(abc.ABC):
    """Runs transcription jobs. Implementations: local, kubernetes, fake (see ``_registry``)."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self._events: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        self._waiting: dict[str, Counter[JobState]] = {}
        """Events queued and not yet streamed, per job and state: a job is a key while it has any."""
        self._stream_closed = False

    # --- what each backend implements --------------------------------------------------------
    @abc.abstractmethod
    async def submit(self, job: TranscriptionJob) -> None:
        """Start the job (its spec is already stored). Submitting the same job id twice runs it once."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Stop a job; unknown or finished jobs are ignored."""

    @abc.abstractmethod
    async def active(self) -> list[str]:
        """Ids of jobs that are queued or running, so a restarted dispatcher adopts instead of duplicating."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release processes, watches and connections; must end the stream (``_close_stream``)."""

    # --- optional capabilities, with defaults --------------------------------------------------
    async def start(self) -> None:
        """Get ready before the first job arrives (e.g. warm processes). Default: nothing to do."""
        return None

    def free_slots(self) -> int | None:
        """How many more jobs could start now; ``None`` when the backend cannot tell (a cluster,
        where Kueue decides), and the planner then packs by audio length alone."""
        return None

    def capacity(self) -> int | None:
        """How many jobs this backend runs at once when nothing else is running; ``None`` when it
        cannot tell (a cluster: Kueue's quota decides). Sizes how much a dispatcher holds."""
        return None

    # --- the shared event stream ---------------------------------------------------------------
    def watch(self) -> AsyncIterator[JobEvent]:
        """State changes of every job this backend knows, in order per job, until ``aclose``."""
        return self._stream()

    async def _stream(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            queued = self._waiting[event.job_id]
            queued[event.state] -= 1
            if not queued[event.state]:
                del queued[event.state]
            if not queued:
                del self._waiting[event.job_id]
            yield event

    def waiting(self, job_id: str, state: JobState) -> bool:
        """Whether an event of ``job_id`` reaching ``state`` is queued behind the one being handled.

        Lets the dispatcher fold a state the job has already left into the next status write: a
        local or fake job is admitted and running within a millisecond, and the two stamps cost
        one revision of the recording's status instead of two (a put, its ack and, with the
        transcriber writing at the same moment, often a refused compare-and-set and a re-read)."""
        return self._waiting.get(job_id, Counter())[state] > 0

    def superseded(self, job_id: str) -> bool:
        """Whether any later event of ``job_id`` is queued behind the one being handled.

        What is kept of a job's state is its last one (the ``jobs`` bucket's ``<job_id>.state``,
        for ``kubescribe jobs``): a state a queued event overwrites a moment later need not be
        written at all. A local or fake job is queued, admitted and running before the first of
        the three is handled, so two puts and their acks per job are saved there."""
        return job_id in self._waiting

    def _emit(self, job_id: str, state: JobState, **fields: object) -> JobEvent:
        """Report a state change; ``fields`` are the other :class:`JobEvent` fields (at, reason, ...)."""
        event = JobEvent(job_id=job_id, state=state, **fields)  # type: ignore[arg-type]
        self._waiting.setdefault(job_id, Counter())[state] += 1
        self._events.put_nowait(event)
        return event

    def _close_stream(self) -> None:
        """End every ``watch()`` iteration (once); called by ``aclose``."""
        if not self._stream_closed:
            self._stream_closed = True
            self._events.put_nowait(None)
