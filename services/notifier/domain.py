"""What a webhook says and when to try again: pure functions, no NATS and no HTTP.

The body is JSON with a stable ``id`` (the event's id: the same on every retry, so a receiver
dedupes on it), the webhook ``type``, the recording and, for a summary, its text; a failure
carries the stage and the reason. Receivers fetch anything else (the transcript) from the
recording's links.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

from services.common.events import RecordingFailed, SummaryReady

SUMMARIZED = "recording.summarized"
FAILED = "recording.failed"
TERMINAL = ("delivered", "failed", "refused")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another attempt (the receiver is overloaded or restarting); any other non-2xx
means the receiver rejects the request itself, and repeating it would change nothing."""


def webhook_type(event: SummaryReady | RecordingFailed) -> str:
    return SUMMARIZED if isinstance(event, SummaryReady) else FAILED


def payload(
    event: SummaryReady | RecordingFailed, *, summary_text: str | None = None, status_url: str | None = None
) -> bytes:
    """The body, serialized once: the signature covers exactly these bytes."""
    data: dict[str, Any]
    if isinstance(event, SummaryReady):
        data = {"stage": "summarized", "summary": summary_text, "model": event.model}
    else:
        data = {
            "stage": "failed",
            "failed_stage": event.stage.value,
            "reason": event.reason,
            "retryable": event.retryable,
        }
    body = {
        "id": event.id,
        "type": webhook_type(event),
        "created_at": event.created_at.isoformat(),
        "recording_id": event.recording_id,
        "tenant": event.tenant,
        "status_url": status_url,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def backoff_s(attempt: int, base_s: float, max_s: float, *, rng: random.Random | None = None) -> float:
    """Exponential with full jitter in its upper half: attempt 1 waits ~base, then doubling to ``max_s``."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def past_deadline(first_attempt_at: datetime, now: datetime, delay_s: float, deadline_s: float) -> bool:
    """True when the next attempt would start after the retry deadline."""
    return (now - first_attempt_at).total_seconds() + delay_s > deadline_s
