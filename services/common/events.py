"""Event contracts: one pydantic model per event, versioned in the type name.

Every event carries ``id`` (assigned once, when the fact happened), ``source``, ``type``
(``kubescribe.<noun>.<verb>.v<N>``) and ``schema_version``. Publishers set ``Nats-Msg-Id`` to
the id, so JetStream drops a re-publish inside its duplicate window; beyond that, consumers are
idempotent per *recording* (the ``recordings`` status KV), which also absorbs duplicates that
carry a different id, such as a client submitting the same recording twice.

Versioning follows CloudEvents: adding an optional field keeps ``v1``; an incompatible change
gets ``v2`` (a new type name) and a new schema file. The two sides are deliberately asymmetric
(the tolerant reader):

- Producers are strict. The models forbid unknown fields (``extra="forbid"``), so kubescribe
  code cannot construct an event the committed schema (``additionalProperties: false``) would
  reject; the test suite validates every published event against ``schemas/``.
- Consumers are tolerant. :func:`parse_event`, the one parse path at every consumer boundary,
  drops fields its model does not know (a newer producer's optional additions) instead of
  failing the message, logs each unknown field once per process and counts every occurrence in
  ``kubescribe_event_unknown_fields_total``. Unknown *values* of known fields still fail: a
  ``schema_version`` or ``type`` the consumer does not know is a different contract.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.errors import InvalidEventError
from services.common.ids import ULID_PATTERN, new_id
from services.common.tolerant import report_unknown_fields, split_unknown

TENANT_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""A DNS label, so that a tenant can name a Kueue LocalQueue and label a Job unchanged."""


class Priority(StrEnum):
    """Scheduling priority; maps to Kueue WorkloadPriorityClasses and GAIE objectives."""

    low = "low"
    normal = "normal"
    high = "high"

    @property
    def rank(self) -> int:
        """Larger runs first."""
        return {"low": 0, "normal": 1, "high": 2}[self.value]


class Stage(StrEnum):
    """Where in the pipeline a failure was detected; names the ``kubescribe.<stage>.failed`` subject."""

    ingest = "ingest"
    dispatch = "dispatch"
    transcribe = "transcribe"
    summarize = "summarize"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ObjectRef(BaseModel):
    """A pointer into a JetStream Object Store: events carry references, never payloads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(description="Object Store bucket name.", examples=["audio"])
    name: str = Field(description="Object name inside the bucket.", examples=["01JDZ8W3V0R4N8M0Q2K5T7Y9AB"])
    size: int | None = Field(None, ge=0, description="Size in bytes, when known.", examples=[482344])
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the content, when known.")


class Event(BaseModel):
    """Fields every kubescribe event shares (the CloudEvents core, flattened)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    SUBJECT: ClassVar[str]

    id: str = Field(
        default_factory=new_id,
        pattern=ULID_PATTERN,
        description="Unique id of this event, assigned once when the fact happened. Also the Nats-Msg-Id.",
        examples=["01JDZ8W3V0R4N8M0Q2K5T7Y9AB"],
    )
    schema_version: Literal[1] = Field(1, description="Major version of this event's schema.")
    source: str = Field(
        min_length=1,
        max_length=256,
        description="Who produced the event (service name or client id).",
        examples=["kubescribe/ingest"],
    )
    recording_id: str = Field(
        pattern=ULID_PATTERN,
        description="The recording this event is about: a ULID, so ids sort by arrival.",
        examples=["01JDZ8W3V0R4N8M0Q2K5T7Y9AB"],
    )
    tenant: str = Field(
        "default",
        pattern=TENANT_PATTERN,
        description="Tenant (a DNS label); selects quotas, queues and models.",
        examples=["acme"],
    )
    priority: Priority = Field(Priority.normal, description="Scheduling priority.")
    created_at: datetime = Field(default_factory=utcnow, description="When the fact happened (UTC, RFC 3339).")


class AudioReceived(Event):
    """A recording's bytes are in the ``audio`` Object Store and it awaits transcription."""

    TYPE: ClassVar[str] = "kubescribe.audio.received.v1"
    SUBJECT: ClassVar[str] = "kubescribe.audio.received"

    type: Literal["kubescribe.audio.received.v1"] = "kubescribe.audio.received.v1"
    audio: ObjectRef = Field(description="Where the recording's bytes are.")
    content_type: str | None = Field(None, description="MIME type as uploaded.", examples=["audio/wav"])
    filename: str | None = Field(None, max_length=512, description="Original file name, for display.")
    duration_s: float | None = Field(
        None, ge=0, description="Audio duration from the container header; used for job packing."
    )
    model: str | None = Field(
        None,
        max_length=256,
        description="Whisper model override (faster-whisper name or CTranslate2 directory).",
        examples=["tiny.en"],
    )
    language: str | None = Field(None, max_length=16, description="Spoken language hint (ISO 639-1).")
    word_timestamps: bool | None = Field(
        None, description="Also time every word (Segment.words); slower, so only when asked (OpenAI API)."
    )
    prompt: str | None = Field(
        None, max_length=4096, description="Whisper initial prompt: spellings and context for the decoder."
    )
    temperature: float | None = Field(
        None, ge=0, le=1, description="Sampling temperature of the decoder; unset uses Whisper's fallback ladder."
    )


class TranscriptReady(Event):
    """A recording has been transcribed; the transcript document is in the ``transcripts`` store."""

    TYPE: ClassVar[str] = "kubescribe.transcript.ready.v1"
    SUBJECT: ClassVar[str] = "kubescribe.transcript.ready"

    type: Literal["kubescribe.transcript.ready.v1"] = "kubescribe.transcript.ready.v1"
    transcript: ObjectRef = Field(description="The Transcript document (JSON).")
    job_id: str = Field(description="The transcription job that produced it.")
    model: str = Field(description="Whisper model used.", examples=["tiny.en"])
    language: str | None = Field(None, description="Detected or forced language.", examples=["en"])
    audio_s: float = Field(ge=0, description="Seconds of audio transcribed.")
    processing_s: float = Field(ge=0, description="Seconds spent transcribing (excluding model load).")
    word_count: int = Field(ge=0, description="Words in the transcript; 0 means silence.")


class SummaryReady(Event):
    """A transcript has been summarized; the summary document is in the ``summaries`` store."""

    TYPE: ClassVar[str] = "kubescribe.summary.ready.v1"
    SUBJECT: ClassVar[str] = "kubescribe.summary.ready"

    type: Literal["kubescribe.summary.ready.v1"] = "kubescribe.summary.ready.v1"
    summary: ObjectRef = Field(description="The Summary document (JSON).")
    model: str = Field(description="LLM that wrote it.")
    ttft_s: float = Field(ge=0, description="Time to first token of the (final) request.")
    generation_s: float = Field(ge=0, description="First token to last token.")
    tokens_in: int = Field(ge=0, description="Prompt tokens (all requests of a map-reduce).")
    tokens_out: int = Field(ge=0, description="Completion tokens (all requests).")


class RecordingFailed(Event):
    """A recording (or an unreadable message) could not be processed at ``stage``."""

    TYPE: ClassVar[str] = "kubescribe.recording.failed.v1"
    SUBJECT: ClassVar[str] = "kubescribe.{stage}.failed"

    type: Literal["kubescribe.recording.failed.v1"] = "kubescribe.recording.failed.v1"
    recording_id: str | None = Field(  # type: ignore[assignment]
        None,
        pattern=ULID_PATTERN,
        description="The recording, or null when the failed message was too malformed to name one.",
    )
    stage: Stage = Field(description="Stage that detected the failure.")
    reason: str = Field(min_length=1, max_length=8192, description="What failed, the value and the fix.")
    retryable: bool = Field(description="True when resubmitting the same input may succeed.")
    attempts: int = Field(1, ge=0, description="Attempts made before giving up.")
    error_type: str | None = Field(None, description="Exception class, for grouping.")
    subject: str | None = Field(None, description="Subject of the message that failed, if any.")
    job_id: str | None = Field(None, description="Job the recording was in, if any.")

    @property
    def failed_subject(self) -> str:
        return f"kubescribe.{self.stage.value}.failed"


class RecordingDeleted(Event):
    """A recording's audio, transcript, summary and status were removed (a request or retention)."""

    TYPE: ClassVar[str] = "kubescribe.recording.deleted.v1"
    SUBJECT: ClassVar[str] = "kubescribe.recording.deleted"

    type: Literal["kubescribe.recording.deleted.v1"] = "kubescribe.recording.deleted.v1"
    reason: Literal["request", "retention"] = Field(
        description="``request``: DELETE by a client; ``retention``: older than the tenant's maximum age."
    )
    removed: list[str] = Field(
        default_factory=list,
        description="What was removed (``bucket/name`` of objects, ``kv/key`` of entries).",
        examples=[["audio/01JDZ8W3V0R4N8M0Q2K5T7Y9AB", "recordings/01JDZ8W3V0R4N8M0Q2K5T7Y9AB"]],
    )


E = TypeVar("E", bound=Event)

EVENT_TYPES: tuple[type[Event], ...] = (AudioReceived, TranscriptReady, SummaryReady, RecordingFailed, RecordingDeleted)


def failed_subject(stage: Stage | str) -> str:
    """The subject a failure detected at ``stage`` is published on."""
    return f"kubescribe.{Stage(stage).value}.failed"


def parse_event(model: type[E], data: bytes | str | dict[str, Any]) -> E:
    """Validate a message body against ``model`` as a tolerant reader (see the module docstring).

    Unknown fields, at the top level or inside a nested reference, are dropped, logged once and
    counted; anything else that does not match raises :class:`InvalidEventError` with a
    readable reason, which also names the unknown fields (``audio.nmae`` beside a missing
    ``audio.name`` is a typo, not a newer producer).
    """
    if isinstance(data, dict):
        body: Any = data
    else:
        try:
            body = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidEventError(f"invalid {model.TYPE} event: <body>: not a JSON document ({exc})") from exc
    known, unknown = split_unknown(model, body)
    try:
        event = model.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}" for err in exc.errors()[:10]
        )
        # An unknown field next to a missing one is often a misspelling: name both.
        ignored = f" (unknown fields, ignored: {', '.join(unknown)})" if unknown else ""
        raise InvalidEventError(f"invalid {model.TYPE} event: {problems}{ignored}") from exc
    report_unknown_fields(model.TYPE, unknown, event.source)
    return event


def recording_id_of(data: bytes | str) -> str | None:
    """Best-effort recording id of a malformed body, so its failure report still names the recording."""
    try:
        value = json.loads(data).get("recording_id")
    except (ValueError, AttributeError, TypeError):
        return None
    return value if isinstance(value, str) and re.match(ULID_PATTERN, value) else None
