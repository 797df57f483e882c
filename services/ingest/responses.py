"""What the OpenAPI document says beyond the route signatures: the streamed upload body and the errors.

The upload route reads its body as a stream (no FastAPI body parameter, which would buffer
it), so its request body is described here by hand; the error answers are raised as
exceptions, which FastAPI cannot see, so their status codes are listed here. Kept apart from
the routes so the routes read as code and this reads as documentation.
"""

from __future__ import annotations

from typing import Any

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token (only when KUBESCRIBE_API_TOKEN is set)."},
    404: {"description": "Unknown or malformed recording id."},
}
"""Every /v1 route can answer these."""

UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Empty or malformed body."},
    409: {"description": "An upload with the same Idempotency-Key is still in progress."},
    413: {"description": "Larger than the upload limit."},
    415: {"description": "Not audio, or an unreadable container header (the reason says which)."},
    422: {"description": "Invalid X-Tenant, X-Priority, X-Model or X-Language header."},
    503: {"description": "NATS is unavailable; nothing was stored."},
}


def not_ready_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The 409 of a result route (``what`` is "transcribed" or "summarized")."""
    return {409: {"description": f"Not {what} yet; the body names the current stage."}}


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The audio: a raw body with an audio/* Content-Type, or multipart/form-data with a "
        "`file` field. Streamed: any size up to the limit (KUBESCRIBE_INGEST_MAX_UPLOAD_BYTES).",
        "content": {
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}
"""The upload's request body as the route reads it (see the module docstring)."""
