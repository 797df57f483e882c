"""The TRANSCRIPTS subscriber's handler: hand each ``TranscriptReady`` message to :class:`InFlight`.

Thin on purpose. The handler settles nothing (``AckPolicy.MANUAL``): it returns once
:class:`~services.common.inflight.InFlight` has a slot for the next message, and InFlight runs
:meth:`services.summarizer.consumer.Summarizer.handle` in the background and acks, naks or reports
the message from its outcome.

Every payload reaches the summarizer, valid or not: its own validation reports a malformed event as
a ``RecordingFailed`` (stage ``summarize``) and acks it. FastStream's validation failing first would
leave the message unacked, redelivered until ``max_deliver`` and then dropped with nobody told why.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from services.common.context import Context, NatsMessage
from services.common.events import TranscriptReady
from services.common.inflight import InFlight

INFLIGHT = "summarizer_inflight"
"""Context key of the service's :class:`InFlight`, set in the app's lifespan."""


def _pass_invalid(value: Any, validate: ValidatorFunctionWrapHandler) -> Any:
    try:
        return validate(value)
    except ValidationError:
        return value


IncomingTranscriptReady = Annotated[TranscriptReady, WrapValidator(_pass_invalid)]
"""Documented as ``TranscriptReady`` in the AsyncAPI document, but an invalid payload still reaches
the handler (the summarizer parses the raw bytes itself, for its error message)."""


async def on_transcript_ready(
    event: IncomingTranscriptReady,
    message: NatsMessage,
    inflight: InFlight = Context(INFLIGHT),
) -> None:
    """Summarize one transcript (``TranscriptReady`` in, ``SummaryReady`` or ``RecordingFailed`` out).

    Returns once a slot is free for the next message, so the pull subscriber never fetches more
    than the service can start; the summary itself runs in the background under :class:`InFlight`.
    """
    await inflight.admit(message.raw_message)
