"""The AUDIO subscriber's handler: hand each ``AudioReceived`` message to the :class:`Dispatcher`.

Thin on purpose. The handler returns at once and settles nothing (``AckPolicy.MANUAL``): the
dispatcher holds the raw nats-py message until its recording's outcome is durable, keeps it
alive with in-progress acks and acks, naks or reports it later (see :mod:`.consumer`).

Every payload reaches the dispatcher, valid or not: the dispatcher's own validation reports a
malformed event as a ``RecordingFailed`` (stage ``dispatch``) and acks it. FastStream's decoding
or validation failing first would leave the message unacked, redelivered after every ``ack_wait``
with nobody told why.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from services.common.context import Context, NatsMessage
from services.common.events import AudioReceived
from services.dispatcher.consumer import Dispatcher

DISPATCHER = "dispatcher"
"""Context key of the service's :class:`Dispatcher`, set in the app's lifespan."""


def _pass_invalid(value: Any, validate: ValidatorFunctionWrapHandler) -> Any:
    try:
        return validate(value)
    except ValidationError:
        return value


IncomingAudioReceived = Annotated[AudioReceived, WrapValidator(_pass_invalid)]
"""Documented as ``AudioReceived`` in the AsyncAPI document, but an invalid payload still reaches
the handler (the dispatcher parses the raw bytes itself, for its error message)."""


async def decode_leniently(message: NatsMessage) -> Any:
    """JSON if the body is JSON, else the bytes as they are.

    FastStream's default decoder raises when a message claims ``content-type: application/json``
    but is not JSON; such a message must still reach the dispatcher's ``report_failure`` path.
    """
    try:
        return json.loads(message.body)
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return message.body


async def on_audio_received(
    event: IncomingAudioReceived,
    message: NatsMessage,
    dispatcher: Dispatcher = Context(DISPATCHER),
) -> None:
    """Queue one recording for planning (``AudioReceived`` in; ``RecordingFailed`` out if invalid).

    ``event`` is only the documented payload: the dispatcher validates ``message.raw_message``
    itself and keeps it, so the message outlives this handler.
    """
    await dispatcher.receive(message.raw_message)
