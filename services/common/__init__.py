"""The contracts every kubescribe service and team shares, importable from one place.

    from services.common import AudioReceived, Priority, StatusStore, ensure_topology

Event models, the documents stored in the Object Stores, the recording status and its store,
the JetStream names (subjects, streams, buckets, durable consumers), settings and the error
tree. The modules behind them stay where they are; this is the list of what other teams may rely
on, and ``tests/unit/test_exported_members.py`` keeps it complete.

Names resolve on first use (PEP 562 ``__getattr__``, as ``pydantic/__init__.py`` does), so
``import services.common`` and every ``services.common.<module>`` import stay cheap: asking for
``KubescribeError`` does not pull in nats-py (about 0.3 s) or pydantic. The ``TYPE_CHECKING``
imports give type checkers and editors the real types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.documents import Segment, Summary, Transcript
    from services.common.errors import (
        ConfigurationError,
        InvalidEventError,
        KubescribeError,
        MissingObjectError,
        PermanentError,
        TemporaryError,
        UnsupportedAudioError,
    )
    from services.common.events import (
        EVENT_TYPES,
        TENANT_PATTERN,
        AudioReceived,
        Event,
        ObjectRef,
        Priority,
        RecordingDeleted,
        RecordingFailed,
        Stage,
        SummaryReady,
        TranscriptReady,
        failed_subject,
        parse_event,
        recording_id_of,
        utcnow,
    )
    from services.common.settings import Settings
    from services.common.status import RecordingStage, RecordingStatus, StatusConflictError, StatusStore
    from services.common.storage import ObjectTooLargeError
    from services.common.topology import (
        AUDIO_BUCKET,
        AUDIO_RECEIVED,
        AUDIO_STREAM,
        DISPATCHER_CONSUMER,
        FAILED_STREAM,
        IDEMPOTENCY_BUCKET,
        JOBS_BUCKET,
        STATUS_BUCKET,
        SUMMARIES_BUCKET,
        SUMMARIES_STREAM,
        SUMMARIZER_CONSUMER,
        SUMMARY_READY,
        TRANSCRIPT_READY,
        TRANSCRIPTS_BUCKET,
        TRANSCRIPTS_STREAM,
        ensure_topology,
    )

__all__ = [
    "AUDIO_BUCKET",
    "AUDIO_RECEIVED",
    "AUDIO_STREAM",
    "DISPATCHER_CONSUMER",
    "EVENT_TYPES",
    "FAILED_STREAM",
    "IDEMPOTENCY_BUCKET",
    "JOBS_BUCKET",
    "STATUS_BUCKET",
    "SUMMARIES_BUCKET",
    "SUMMARIES_STREAM",
    "SUMMARIZER_CONSUMER",
    "SUMMARY_READY",
    "TENANT_PATTERN",
    "TRANSCRIPTS_BUCKET",
    "TRANSCRIPTS_STREAM",
    "TRANSCRIPT_READY",
    "AudioReceived",
    "ConfigurationError",
    "Event",
    "InvalidEventError",
    "KubescribeError",
    "MissingObjectError",
    "ObjectRef",
    "ObjectTooLargeError",
    "PermanentError",
    "Priority",
    "RecordingDeleted",
    "RecordingFailed",
    "RecordingStage",
    "RecordingStatus",
    "Segment",
    "Settings",
    "Stage",
    "StatusConflictError",
    "StatusStore",
    "Summary",
    "SummaryReady",
    "TemporaryError",
    "Transcript",
    "TranscriptReady",
    "UnsupportedAudioError",
    "ensure_topology",
    "failed_subject",
    "parse_event",
    "recording_id_of",
    "utcnow",
]

_MODULES: dict[str, tuple[str, ...]] = {
    "services.common.documents": ("Segment", "Summary", "Transcript"),
    "services.common.errors": (
        "ConfigurationError",
        "InvalidEventError",
        "KubescribeError",
        "MissingObjectError",
        "PermanentError",
        "TemporaryError",
        "UnsupportedAudioError",
    ),
    "services.common.events": (
        "EVENT_TYPES",
        "TENANT_PATTERN",
        "AudioReceived",
        "Event",
        "ObjectRef",
        "Priority",
        "RecordingDeleted",
        "RecordingFailed",
        "Stage",
        "SummaryReady",
        "TranscriptReady",
        "failed_subject",
        "parse_event",
        "recording_id_of",
        "utcnow",
    ),
    "services.common.settings": ("Settings",),
    "services.common.status": ("RecordingStage", "RecordingStatus", "StatusConflictError", "StatusStore"),
    "services.common.storage": ("ObjectTooLargeError",),
    "services.common.topology": (
        "AUDIO_BUCKET",
        "AUDIO_RECEIVED",
        "AUDIO_STREAM",
        "DISPATCHER_CONSUMER",
        "FAILED_STREAM",
        "IDEMPOTENCY_BUCKET",
        "JOBS_BUCKET",
        "STATUS_BUCKET",
        "SUMMARIES_BUCKET",
        "SUMMARIES_STREAM",
        "SUMMARIZER_CONSUMER",
        "SUMMARY_READY",
        "TRANSCRIPT_READY",
        "TRANSCRIPTS_BUCKET",
        "TRANSCRIPTS_STREAM",
        "ensure_topology",
    ),
}
_ORIGIN: dict[str, str] = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    """Import the defining module on first use and cache the name here."""
    module = _ORIGIN.get(name)
    if module is None:
        # Not a contract: AttributeError lets ``from services.common import <submodule>`` fall
        # back to importing the submodule, as for any package.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
