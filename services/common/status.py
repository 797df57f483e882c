"""Recording status in the ``recordings`` KV bucket, updated with compare-and-set.

Several services write one recording's status (ingest, dispatcher, transcriber, summarizer,
each possibly redelivered), so every write is a read-modify-write guarded by the entry's
revision: a concurrent writer makes the update fail, and we re-read and re-apply. No writer
ever overwrites another's stage timestamps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import TemporaryError
from services.common.events import ObjectRef, Priority, utcnow
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

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> StatusStore:
        return cls(await js.key_value(STATUS_BUCKET))

    async def get(self, recording_id: str) -> RecordingStatus | None:
        try:
            entry = await self.kv.get(recording_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return RecordingStatus.model_validate_json(entry.value)

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
            try:
                entry = await self.kv.get(recording_id)
                revision = entry.revision
                current = RecordingStatus.model_validate_json(entry.value) if entry.value else None
            except KeyNotFoundError:
                revision, current = None, None
            if current is None:
                current = create() if create else RecordingStatus(recording_id=recording_id)
            updated = mutate(current) or current
            payload = updated.model_dump_json().encode()
            try:
                if revision is None:
                    await self.kv.create(recording_id, payload)
                else:
                    await self.kv.update(recording_id, payload, last=revision)
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
