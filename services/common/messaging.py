"""Publishing events and failure reports on JetStream, the same way from every service."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.api import PubAck

from services.common.events import Event, RecordingFailed, Stage, failed_subject
from services.common.status import RecordingStage, StatusStore
from services.common.telemetry import inject_headers

if TYPE_CHECKING:
    from faststream.nats import NatsBroker, NatsRouter

logger = logging.getLogger(__name__)


async def publish_event(
    js: JetStreamContext, event: Event, *, subject: str | None = None, headers: dict[str, str] | None = None
) -> PubAck:
    """Publish with ``Nats-Msg-Id`` = event id (a re-publish inside the duplicate window is dropped)
    and the current trace context."""
    all_headers = inject_headers(headers)
    all_headers["Nats-Msg-Id"] = event.id
    all_headers["Kubescribe-Event-Type"] = event.type  # type: ignore[attr-defined]
    return await js.publish(subject or event.SUBJECT, event.model_dump_json().encode(), headers=all_headers)


async def report_failure(
    js: JetStreamContext,
    *,
    stage: Stage,
    reason: str,
    retryable: bool,
    source: str,
    recording_id: str | None = None,
    attempts: int = 1,
    error: BaseException | None = None,
    subject: str | None = None,
    job_id: str | None = None,
    tenant: str = "default",
    update_status: bool = True,
) -> RecordingFailed:
    """Publish a ``RecordingFailed`` on ``kubescribe.<stage>.failed`` and mark the status failed.

    The status write comes first so that a consumer of the failure event always finds it.
    """
    event = RecordingFailed(
        source=source,
        recording_id=recording_id,
        tenant=tenant,
        stage=stage,
        reason=reason[:8192],
        retryable=retryable,
        attempts=attempts,
        error_type=type(error).__name__ if error else None,
        subject=subject,
        job_id=job_id,
    )
    if recording_id and update_status:
        store = await StatusStore.open(js)
        await store.advance(
            recording_id,
            RecordingStage.failed,
            error=event.reason,
            error_stage=stage.value,
            retryable=retryable,
        )
    await publish_event(js, event, subject=failed_subject(stage))
    logger.warning("recording %s failed at %s: %s", recording_id or "<unknown>", stage.value, reason)
    return event


@dataclass(frozen=True)
class Channel:
    """A subject a service publishes on, as the AsyncAPI document shows it."""

    subject: str
    schema: type[Event]
    name: str
    """Shown as ``<service>:<name>`` (the event class name unless two channels share a class)."""
    description: str


def declare_publishers(target: NatsBroker | NatsRouter, service: str, channels: Iterable[Channel]) -> None:
    """Declare ``service``'s channels for the AsyncAPI export only.

    Services publish with :func:`publish_event` (``Nats-Msg-Id``, trace headers), not through
    FastStream publishers, so these declarations exist to make the generated document list every
    channel; one function keeps the title convention the same for every service.
    """
    for channel in channels:
        target.publisher(
            channel.subject, schema=channel.schema, title=f"{service}:{channel.name}", description=channel.description
        )
