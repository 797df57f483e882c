"""Exceptions of kubescribe, classified by what the caller does next.

    KubescribeError
    ├── PermanentError        reject: publish ``kubescribe.<stage>.failed`` and ack
    │   ├── InvalidEventError     a message that does not validate against its contract
    │   ├── MissingObjectError    an event points at an object that is not in the store
    │   └── UnsupportedAudioError bytes that are not audio we can decode
    ├── TemporaryError(delay)  nack with delay: the same input may succeed later
    └── ConfigurationError     a setting is wrong; the process cannot start

Handlers raise these; the messaging boundary maps them to ack / nack / failure events,
so that no handler has to know about JetStream acknowledgement semantics.
"""

from __future__ import annotations


class KubescribeError(Exception):
    """Root of every error kubescribe raises on purpose."""


class PermanentError(KubescribeError):
    """Retrying the same input cannot succeed: report it and drop the message."""

    retryable = False


class InvalidEventError(PermanentError):
    """A message body does not match its event contract."""


class MissingObjectError(PermanentError):
    """An event references an Object Store entry that does not exist."""


class UnsupportedAudioError(PermanentError):
    """The bytes are not audio, or not audio that can be decoded."""


class TemporaryError(KubescribeError):
    """The operation may succeed later; ``delay`` says when to try again (seconds)."""

    retryable = True

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ConfigurationError(KubescribeError):
    """A setting is missing or inconsistent; the message names the variable and the fix."""
