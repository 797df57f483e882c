"""Job planning, pure: which recordings go together into which transcription job.

Loading a Whisper model costs more than transcribing a short clip, so short recordings are
packed into one job until it holds ``target_job_audio_s`` of audio (or ``max_job_recordings``),
waiting at most ``max_linger_s`` for company; a recording as long as a job goes alone. Jobs
hold one model and one tenant (a Kueue LocalQueue per tenant, one model load per job) and
higher priority is planned first. A recording longer than ``split_threshold_s`` is split into
time windows, one job per chunk, over the free slots (:mod:`services.dispatcher.splitting`).
Full jobs leave at once only when there are enough of them for every free slot; otherwise the
pending batch is spread evenly (by estimated cost) over the free slots when the linger ends, so
that packing never leaves a core idle. No I/O here: the consumer feeds it
recordings and the clock, and submits what it returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from services.common.events import AudioReceived, Priority
from services.common.settings import DispatcherSettings
from services.dispatcher.domain import JobRecording, TranscriptionJob
from services.dispatcher.splitting import split_recording

PCM_BYTES_PER_S = 32000
"""16 kHz 16-bit mono: the size → duration estimate when the event has no duration."""


@dataclass
class Pending:
    """A recording waiting to be planned."""

    recording: JobRecording
    model: str
    arrived: float
    """Monotonic time the dispatcher first saw it (starts the linger clock)."""
    attempt: int = 1
    not_before: float = 0.0
    """Monotonic time before which it must not be planned (retry backoff)."""
    seq: int = 0

    @property
    def rank(self) -> int:
        return self.recording.priority.rank


QUIET_S = 0.1
"""With a slot free, a burst that has stopped arriving for this long is planned without waiting
out ``max_linger_s``: nobody else is coming, and the idle core is worth more than packing."""


@dataclass
class Planner:
    settings: DispatcherSettings
    quiet_s: float = QUIET_S
    _pending: dict[str, Pending] = field(default_factory=dict)
    _seq: int = 0
    _last_arrival: float = float("-inf")

    # --- choosing model and profile --------------------------------------------------------
    def model_for(self, event: AudioReceived) -> str:
        """The event's own model, else the tenant's, else the default."""
        return event.model or self.settings.tenant_models.get(event.tenant) or self.settings.default_model

    def profile_for(self, model: str) -> str:
        """Slice profile from the settings table; unknown models get the largest common slice."""
        return self.settings.profiles.get(model, "mig-3g.20gb")

    def estimate_s(self, recording: JobRecording) -> float:
        if recording.duration_s is not None:
            return recording.duration_s
        if recording.audio.size:
            return recording.audio.size / PCM_BYTES_PER_S
        return self.settings.target_job_audio_s / 4

    # --- the queue ---------------------------------------------------------------------------
    def add(self, pending: Pending) -> None:
        self._seq += 1
        pending.seq = self._seq
        self._last_arrival = max(self._last_arrival, pending.arrived)
        self._pending[pending.recording.recording_id] = pending

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`plan` may next have something to do (linger or backoff expiry)."""
        times = [max(p.arrived + self.settings.max_linger_s, p.not_before) for p in self._pending.values()]
        if not times:
            return None
        quiet = self._last_arrival + self.quiet_s
        return min(min(times), quiet) if quiet > now else min(times)

    # --- planning ----------------------------------------------------------------------------
    def plan(self, now: float, free_slots: int | None = None) -> list[TranscriptionJob]:
        """Jobs to submit now; ``free_slots`` (None: unknown) lets a linger flush fill idle slots."""
        groups: dict[tuple[str, str], list[Pending]] = {}
        for pending in self._pending.values():
            if pending.not_before <= now:
                groups.setdefault((pending.model, pending.recording.tenant), []).append(pending)
        batches: list[list[Pending]] = []
        unclaimed = free_slots
        for items in groups.values():
            items.sort(key=lambda p: (-p.rank, p.seq))
            shorts = []
            for item in items:
                chunks = self.split(item, unclaimed)
                if chunks:
                    batches.extend([c] for c in chunks)
                    unclaimed = None if unclaimed is None else max(0, unclaimed - len(chunks))
                elif self.estimate_s(item.recording) >= self.settings.target_job_audio_s:
                    batches.append([item])
                    unclaimed = None if unclaimed is None else max(0, unclaimed - 1)
                else:
                    shorts.append(item)
            batches.extend(self._pack(shorts, now, free_slots))
        jobs = [self._job(batch) for batch in batches]
        for job in jobs:
            for recording in job.recordings:
                self._pending.pop(recording.recording_id, None)
        jobs.sort(key=lambda j: -j.priority.rank)
        return jobs

    def split(self, item: Pending, free_slots: int | None) -> list[Pending]:
        """One pending item per chunk of a long recording, or ``[]`` to plan it whole.

        Each long recording planned in one call claims the slots its chunks will take, so the
        next one is spread over what is left (or over ``split_max_chunks`` when nothing is).
        """
        if item.recording.chunk is not None:
            return []
        chunks = split_recording(item.recording, self.estimate_s(item.recording), free_slots, self.settings)
        return [replace(item, recording=chunk) for chunk in chunks]

    def _pack(self, items: list[Pending], now: float, free_slots: int | None) -> list[list[Pending]]:
        """Full jobs at once only when there are enough of them for every free slot; otherwise wait
        for the linger to end and spread what is pending evenly over the free slots."""
        if not items:
            return []
        target, cap = self.settings.target_job_audio_s, self.settings.max_job_recordings
        slots = max(1, free_slots if free_slots is not None else 1)
        full: list[list[Pending]] = []
        current: list[Pending] = []
        total = 0.0
        for item in items:
            current.append(item)
            total += self.estimate_s(item.recording)
            if total >= target or len(current) >= cap:
                full.append(current)
                current, total = [], 0.0
        lingered = min(p.arrived for p in items) + self.settings.max_linger_s <= now
        quiet = bool(free_slots) and self._last_arrival + self.quiet_s <= now
        if lingered or quiet:
            audio = sum(self.estimate_s(p.recording) for p in items)
            parts = max(min(slots, len(items)), math.ceil(len(items) / cap), math.ceil(audio / target))
            return self._split(items, parts)
        return full if len(full) >= slots else []

    def cost(self, recording: JobRecording) -> float:
        """Relative transcription cost: Whisper pays a fixed price per file and per 30 s window, so
        ten 3 s clips cost far more than one 30 s clip (balancing by audio seconds alone would not)."""
        return 1.0 + self.estimate_s(recording) / 30.0

    def _split(self, items: list[Pending], parts: int) -> list[list[Pending]]:
        """Longest-processing-time-first over ``parts`` bins by :meth:`cost`, each bin kept in priority order."""
        if parts <= 1:
            return [items]
        bins: list[list[Pending]] = [[] for _ in range(parts)]
        loads = [0.0] * parts
        for item in sorted(items, key=lambda p: (-self.cost(p.recording), -p.rank, p.seq)):
            index = loads.index(min(loads))
            bins[index].append(item)
            loads[index] += self.cost(item.recording)
        return [sorted(b, key=lambda p: (-p.rank, p.seq)) for b in bins if b]

    def _job(self, batch: list[Pending]) -> TranscriptionJob:
        first = batch[0]
        return TranscriptionJob(
            model=first.model,
            profile=self.profile_for(first.model),
            recordings=[p.recording for p in batch],
            priority=max((p.recording.priority for p in batch), key=lambda p: p.rank, default=Priority.normal),
            tenant=first.recording.tenant,
            attempt=max(p.attempt for p in batch),
        )
