"""The one logging setup every kubescribe process runs at start (CLI, ingest, transcriber Job).

One format and one knob, ``KUBESCRIBE_LOG_LEVEL`` (default ``WARNING``: a CLI's output is its
result, and services log what needs attention), so the logs of every process read alike and a
single environment variable turns on debug logging across a whole local stack.
"""

from __future__ import annotations

import logging
import os

from nats.errors import Error as NatsError

LEVEL_ENV = "KUBESCRIBE_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


OUTAGE_ERRORS: tuple[type[BaseException], ...] = (NatsError, TimeoutError)
"""What nats-py raises while a server restarts or JetStream elects a leader: an outage to ride out."""


class OneLineNatsErrors(logging.Filter):
    """A NATS restart is an outage to ride out, not a bug: one line per event, no traceback.

    FastStream 0.7 logs a lost connection ("Connection broken with ...") and a pull fetch that
    timed out while reconnecting (its task supervisor's "raised an exception, retrying...") with
    the exception's traceback; both recover on their own (nats-py reconnects and resubscribes,
    the supervisor restarts the fetch loop), so the traceback only hides real errors. Our own
    code's "could not purge / publish / report" lines during a leader election are the same.
    :func:`configure_logging` puts it on the root handlers, so every process has it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OUTAGE_ERRORS):
            record.msg = f"{record.getMessage().splitlines()[0]} ({type(exc).__name__}: {exc or 'timeout'})"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str | int | None = None) -> None:
    """Configure the root logger once: ``level``, else ``$KUBESCRIBE_LOG_LEVEL``, else WARNING."""
    if level is None:
        level = os.environ.get(LEVEL_ENV) or "WARNING"
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OneLineNatsErrors) for f in handler.filters):
            handler.addFilter(OneLineNatsErrors())
