"""Kubernetes API errors translated at the boundary, keeping the cause.

Where they sit in :mod:`services.common.errors`::

    KubescribeError
    ├── PermanentError
    │   └── KubernetesApiError   403 Forbidden, 422 Invalid, ...: names the API's reason (and,
    │                            for 403, the Role to fix); the dispatcher fails the recordings
    └── TemporaryError(delay)    408, 429, 5xx, connection failures: try again later
"""

from __future__ import annotations

import contextlib
import json

from kubernetes.client.exceptions import ApiException

from services.common.errors import PermanentError, TemporaryError

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_DELAY_S = 2.0
"""How long to wait before retrying a transient API failure: long enough for an API server
restart or a rate limiter to recover, short next to a job's minutes."""


class KubernetesApiError(PermanentError):
    """The API server refused a request (403, 422, ...); the message carries the API's reason."""

    def __init__(self, message: str, *, status: int | None, reason: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def api_error(exc: ApiException, doing: str) -> PermanentError | TemporaryError:
    """Translate an ``ApiException`` at the boundary, naming what failed and the API's reason."""
    reason = exc.reason
    message = ""
    with contextlib.suppress(TypeError, ValueError):
        body = json.loads(exc.body or "")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    text = f"Kubernetes API refused to {doing}: HTTP {exc.status} {reason}"
    if message:
        text += f": {message}"
    if exc.status in TRANSIENT_STATUSES or exc.status == 0:
        return TemporaryError(text, delay=RETRY_DELAY_S)
    if exc.status == 403:
        text += " (the dispatcher's Role must allow it: see charts/kubescribe/templates/rbac.yaml)"
    return KubernetesApiError(text, status=exc.status, reason=reason)


def unreachable(exc: BaseException, doing: str) -> TemporaryError:
    """A connection failure (urllib3, OSError): the API server may be back in a moment."""
    return TemporaryError(f"cannot reach the Kubernetes API to {doing}: {exc}", delay=RETRY_DELAY_S)
