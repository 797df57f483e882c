"""Errors of the ingest API and the one place each becomes an HTTP answer.

    KubescribeError
    ├── PermanentError
    │   ├── ApiError(status, code, detail)   a rejected request: 4xx, the client must change it
    │   │   └── UploadError                  the body cannot be read as an upload (400, 415)
    │   └── UnsupportedAudioError            → 415 ``not_audio``
    ├── TemporaryError
    │   └── UnavailableError                 → 503 ``unavailable``: nothing was kept; retry
    └── ObjectTooLargeError                  → 413 ``too_large`` (raised while streaming)

Every answer has the body ``{"error": code, "detail": message, ...extra}``; a 401 adds
``WWW-Authenticate: Bearer``. :func:`add_error_handlers` registers one handler per type, so
routes and the service raise and never build error responses themselves, and every rejected
upload is counted in ``kubescribe_ingest_rejections`` by its code in one place.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from services.common.errors import PermanentError, TemporaryError, UnsupportedAudioError
from services.common.storage import ObjectTooLargeError

RETRY_AFTER_S = 2
"""What a 503 tells the client to wait: a supervised nats-server is back within about a second
(0.5 s restart backoff, tens of ms to start, 0.5 s reconnect wait), so 2 s lands after it."""


class ApiError(PermanentError):
    """A request the API rejects: answered with ``status`` and ``{"error": code, "detail": ...}``.

    Permanent because the same request gets the same answer; the client has to change it.
    """

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra
        self.headers = headers


class UnavailableError(TemporaryError):
    """NATS (or the store behind it) failed; nothing of the request was kept, so a retry starts clean."""

    status = 503
    code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def error_response(
    request: Request, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error answer; a rejected upload is counted by its ``code`` in the app's service metrics."""
    if request.method == "POST" and status >= 400:
        request.app.state.service.metrics.rejections.labels(code).inc()
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if status == 503:  # nothing was kept: the client retries after this many seconds
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnavailableError)
    return error_response(request, exc.status, exc.code, exc.detail)


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ObjectTooLargeError)
    return error_response(request, 413, "too_large", f"the body is larger than the limit of {exc.limit} bytes")


async def _not_audio(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request, 415, "not_audio", str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors; a 405 lists in ``Allow`` the methods of *every* route on the path
    (Starlette names only the first route's, and GET and DELETE of a recording are two routes)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] is not Match.NONE:
            allowed |= set(getattr(route, "methods", None) or ())
    allow = ", ".join(sorted(allowed))
    return error_response(
        request,
        405,
        "method_not_allowed",
        f"{request.method} is not allowed here; use {allow}",
        headers={"Allow": allow},
    )


def add_error_handlers(app: FastAPI) -> None:
    """One handler per error type (``UploadError`` is an ``ApiError`` and shares its handler)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(UnavailableError, _unavailable)
    app.add_exception_handler(ObjectTooLargeError, _too_large)
    app.add_exception_handler(UnsupportedAudioError, _not_audio)
