"""While NATS is away, the ingest answers 503 with ``Retry-After`` and the reason, on every route.

Everything the API does goes through NATS (the Object Store, the status KV, the idempotency
claims, the event stream), so without a connection there is nothing useful to do, and a 500
with a traceback would tell a client its request was wrong. Two pieces, one reason string:

- :class:`NatsGate` answers ``/v1/*`` at once while the client is disconnected or reconnecting,
  before a byte of an upload is read (the client keeps the body and retries with its
  Idempotency-Key; nothing was stored).
- :func:`add_nats_error_handler` maps a nats-py error raised mid-request (the connection dropped
  while a status read or an upload was under way) to the same 503.

``/readyz`` says the same reason (:func:`nats_problem`), so a load balancer and a person see why.
"""

from __future__ import annotations

import nats.errors
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NatsClient
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest.errors import RETRY_AFTER_S, UnavailableError, error_response

GATED_PREFIX = "/v1/"
"""The API routes; probes and metrics keep answering (``/readyz`` gives the reason itself)."""


def nats_problem(nc: NatsClient | None) -> str | None:
    """Why the ingest cannot serve now, or None when its NATS connection is up."""
    if nc is None:
        return "NATS is not connected yet (starting)"
    if nc.is_closed:
        return "the NATS connection is closed"
    if nc.is_reconnecting or not nc.is_connected:
        last = nc.last_error
        cause = f" after {type(last).__name__}" if last else ""
        where = f" at {nc.servers[0].hostname}:{nc.servers[0].port}" if nc.servers else ""  # no credentials
        return f"NATS{where} is unreachable{cause}; reconnecting"
    return None


class NatsGate:
    """Pure ASGI (the upload body is not touched): 503 for ``/v1/*`` while NATS is away."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(GATED_PREFIX):
            problem = nats_problem(scope["app"].state.service.nc)
            if problem:
                exc = UnavailableError(f"{problem}; retry after {RETRY_AFTER_S}s")
                response = error_response(Request(scope), exc.status, exc.code, exc.detail)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _nats_error(request: Request, exc: Exception) -> JSONResponse:
    detail = f"NATS failed during the request ({type(exc).__name__}: {exc}); nothing was changed, retry"
    return error_response(request, UnavailableError.status, UnavailableError.code, detail)


def add_nats_error_handler(app: FastAPI) -> None:
    """nats-py errors (connection lost, timeouts, no responders) become the 503 of the gate."""
    app.add_exception_handler(nats.errors.Error, _nats_error)
