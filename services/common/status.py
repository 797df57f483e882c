"""Recording status in the ``recordings`` KV bucket, updated with compare-and-set.

Several services write one recording's status (ingest, dispatcher, transcriber, summarizer,
each possibly redelivered), so every write is a read-modify-write guarded by the entry's
revision: a concurrent writer makes the update fail, and we re-read and re-apply. No writer
ever overwrites another's stage timestamps.

A store remembers the entries it wrote last, so a service that advances one recording several
times in a row (the dispatcher: dispatched, admitted, running; the summarizer: summarizing, its
progress, summarized) writes against the revision it holds instead of reading it back first:
one NATS round trip per update instead of two. The compare-and-set still guards every write;
a remembered revision that another writer has moved past costs one refused write and a re-read.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import TemporaryError
from services.common.events import ObjectRef, Priority, utcnow
from services.common.nats_client import kv_value
from services.common.topology import STATUS_BUCKET


class RecordingStage(StrEnum):
    """Life cycle of a recording, in order; ``failed`` is terminal unless retried."""

    received = "received"
    queued = "queued"
    dispatched = "dispatched"
    admitted = "admitted"
    running = "running"
    transcribed = "transcribed"
    summarizing = "summarizing"
    summarized = "summarized"
    failed = "failed"

    @property
    def rank(self) -> int:
        return list(RecordingStage).index(self)


class WebhookDelivery(BaseModel):
    """Where a recording's completion webhook goes and how its delivery went (written by the notifier).

    ``state``: ``pending`` (nothing sent yet), ``retrying`` (an attempt failed; the next is
    scheduled), ``delivered`` (a 2xx), ``failed`` (a non-retryable answer or the retry deadline
    passed) or ``refused`` (the URL is not allowed, e.g. a private address: see docs/webhooks.md).
    """

    model_config = ConfigDict(extra="ignore")

    url: str | None = None
    state: str = "pending"
    event: str | None = Field(None, description="Webhook type of the last delivery, e.g. recording.summarized.")
    event_id: str | None = None
    attempts: int = 0
    last_status_code: int | None = None
    error: str | None = None
    first_attempt_at: datetime | None = None
    updated_at: datetime | None = None


class RecordingStatus(BaseModel):
    """The status document of one recording (the KV value)."""

    model_config = ConfigDict(extra="ignore")

    recording_id: str
    tenant: str = "default"
    priority: Priority = Priority.normal
    stage: RecordingStage = RecordingStage.received
    job_id: str | None = None
    attempts: int = 0
    timestamps: dict[str, datetime] = Field(
        default_factory=dict, description="First time each stage was reached (stage name → UTC time)."
    )
    error: str | None = None
    error_stage: str | None = None
    retryable: bool | None = None
    audio: ObjectRef | None = None
    transcript: ObjectRef | None = None
    summary: ObjectRef | None = None
    filename: str | None = None
    duration_s: float | None = None
    traceparent: str | None = Field(None, description="W3C trace context of the recording's trace, for later stages.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Per-stage numbers (ttft_s, audio_s, processing_s, ...)."
    )
    webhook: WebhookDelivery | None = Field(None, description="The completion webhook, when one is configured.")
    chunks_done: dict[str, list[int]] = Field(
        default_factory=dict,
        description="A split recording's finished chunks: chunk count of the plan → indices stored (CAS-updated).",
    )

    def advance(self, stage: RecordingStage, at: datetime | None = None) -> RecordingStatus:
        """Record that ``stage`` was reached; never moves the stage backwards (redelivery is harmless)."""
        self.timestamps.setdefault(stage.value, at or utcnow())
        if stage is RecordingStage.failed or self.stage is RecordingStage.failed:
            if stage is RecordingStage.failed:
                self.stage = stage
            elif stage.rank >= RecordingStage.transcribed.rank:
                # A retry that succeeded after a failure report clears it.
                self.stage, self.error = stage, None
            return self
        if stage.rank > self.stage.rank:
            self.stage = stage
        return self

    @property
    def done(self) -> bool:
        return self.stage in (RecordingStage.summarized, RecordingStage.failed)


class StatusConflictError(TemporaryError):
    """Compare-and-set kept losing; only under pathological contention, so a later retry wins."""


class StatusStore:
    """CAS-updated recording statuses."""

    written_entries = 4096
    """How many of its own last writes a store remembers (~1 KB each): the recordings in flight."""

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self.kv = kv
        self.js = js
        self._written: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def _remember(self, recording_id: str, revision: int, payload: bytes) -> None:
        self._written[recording_id] = (revision, payload)
        self._written.move_to_end(recording_id)
        while len(self._written) > self.written_entries:
            self._written.popitem(last=False)

    async def _read(self, recording_id: str) -> tuple[int | None, RecordingStatus | None]:
        """The entry to apply an update to: what this store wrote (or read for update) last, else the bucket's."""
        if (known := self._written.pop(recording_id, None)) is not None:
            return known[0], RecordingStatus.model_validate_json(known[1])
        revision, status, _ = await self._read_bucket(recording_id)
        return revision, status

    @classmethod
    async def open(cls, js: JetStreamContext) -> StatusStore:
        return cls(await js.key_value(STATUS_BUCKET), js)

    async def get(self, recording_id: str, *, for_update: bool = False) -> RecordingStatus | None:
        """The status as the bucket has it. ``for_update``: the caller updates it next, so the
        entry is kept as the base of that compare-and-set, which then needs no read of its own
        (the summarizer and the dispatcher read a recording's status to decide, then write it at
        once: one direct get per recording less for each). A stale base only costs the refused
        write and a re-read, as for any lost race."""
        revision, status, raw = await self._read_bucket(recording_id)
        if for_update and revision is not None and raw is not None:
            self._remember(recording_id, revision, raw)
        return status

    async def _read_bucket(self, recording_id: str) -> tuple[int | None, RecordingStatus | None, bytes | None]:
        """The key's revision, status and stored bytes, one direct get (a "not found" confirmed by
        the leader); a deleted or purged key reads as absent, as nats-py's ``KeyValue.get`` reports it."""
        msg = await kv_value(self.js, STATUS_BUCKET, recording_id)
        if msg is None:
            return None, None, None
        return msg.seq, RecordingStatus.model_validate_json(msg.data), msg.data

    async def update(
        self,
        recording_id: str,
        mutate: Callable[[RecordingStatus], RecordingStatus | None],
        *,
        create: Callable[[], RecordingStatus] | None = None,
        max_tries: int = 200,
    ) -> RecordingStatus:
        """Apply ``mutate`` atomically; ``create`` builds the status when the key does not exist yet.

        ``mutate`` may be called several times (once per lost race), so it must be pure.
        """
        for attempt in range(max_tries):
            revision, current = await self._read(recording_id)  # a refused write re-reads the bucket
            if current is None:
                current = create() if create else RecordingStatus(recording_id=recording_id)
            updated = mutate(current) or current
            payload = updated.model_dump_json().encode()
            try:
                if revision is None:
                    written = await self.kv.create(recording_id, payload)
                else:
                    written = await self.kv.update(recording_id, payload, last=revision)
                self._remember(recording_id, written, payload)
                return updated
            except KeyWrongLastSequenceError:
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise StatusConflictError(f"could not update status of {recording_id} after {max_tries} tries")

    async def advance(self, recording_id: str, stage: RecordingStage, **fields: object) -> RecordingStatus:
        """Shorthand: reach ``stage`` and set ``fields`` (``metrics`` is merged, not replaced)."""
        metrics = fields.pop("metrics", None)

        def mutate(status: RecordingStatus) -> RecordingStatus:
            for key, value in fields.items():
                setattr(status, key, value)
            if metrics:
                status.metrics.update(metrics)  # type: ignore[arg-type]
            return status.advance(stage)

        return await self.update(recording_id, mutate)
