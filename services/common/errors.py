"""Exceptions of kubescribe, classified by what the caller does next.

Every exception kubescribe raises on purpose derives from :class:`KubescribeError`, so a CLI
prints it as one line and exits 1, and the messaging boundary can tell it from a bug. The
whole tree, with the module each class lives in::

    KubescribeError
    ├── PermanentError            reject: publish ``kubescribe.<stage>.failed`` and ack
    │   ├── InvalidEventError         a message that does not validate against its contract
    │   ├── MissingObjectError        an event points at an object that is not in the store
    │   ├── UnsupportedAudioError     bytes that are not audio we can decode
    │   ├── LlmRequestError           the LLM gateway rejected the request (4xx)   summarizer.client
    │   └── KubernetesApiError        the API server refused a request (403, 422)  dispatcher.backends
    ├── TemporaryError(delay)     nak with ``delay``: the same input may succeed later
    │   ├── StatusConflictError       the status KV's compare-and-set kept losing  common.status
    │   ├── LlmUnavailableError       the gateway shed load until the deadline     summarizer.client
    │   └── LlmStreamError            malformed SSE, or the stream dropped         summarizer.client
    ├── ConfigurationError        a setting is wrong; the process cannot start
    ├── ObjectTooLargeError       a streamed object went over its limit           common.storage
    ├── ProcessFailedError        a child process exited or never became ready    runtime.supervisor
    ├── UploadError               an upload body that cannot be read (HTTP 4xx)   ingest.upload
    ├── ApiError                  an error answer of the ingest API              ingest.api
    ├── SubmitError               the ingest API refused an upload (its client)   ingest.client
    ├── BenchError                a benchmark run that did not complete           bench.paper
    └── LoadgenError              the load generator's root                       loadgen.errors
        ├── TraceError                a trace file that does not parse or validate
        ├── AudioSynthesisError       a synthetic audio spec that cannot be rendered
        └── TargetError               the system under test refused or was unreachable

Handlers raise these; the messaging boundary (:mod:`services.common.inflight`) maps them to
ack / nak-with-delay / failure events, so that no handler has to know about JetStream
acknowledgement semantics. Anything else a handler raises is a bug: it is retried with
backoff and, after ``max_deliver`` deliveries, reported as a retryable failure.
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
