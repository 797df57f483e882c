"""What the OpenAPI document says beyond the route signatures: the streamed upload body and the errors.

The upload route reads its body as a stream (no FastAPI body parameter, which would buffer
it), so its request body is described here by hand; the error answers are raised as
exceptions, which FastAPI cannot see, so their status codes are listed here. Kept apart from
the routes so the routes read as code and this reads as documentation.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
"""The body of every error answer raised by the API (``services.ingest.errors``)."""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or wrong API key (when KUBESCRIBE_API_KEYS_FILE or KUBESCRIBE_API_TOKEN is set)."),
    404: _error("Unknown or malformed recording id, or a recording of another tenant."),
    503: _error("NATS is unavailable; retry."),
}
"""Every /v1 route can answer these."""

RECORDING_LINKS = {
    "GetRecording": {"operationId": "get_recording", "parameters": {"recording_id": "$response.body#/id"}},
    "GetTranscript": {"operationId": "get_transcript", "parameters": {"recording_id": "$response.body#/id"}},
    "GetSummary": {"operationId": "get_summary", "parameters": {"recording_id": "$response.body#/id"}},
    "DeleteRecording": {"operationId": "delete_recording", "parameters": {"recording_id": "$response.body#/id"}},
}
"""OpenAPI links from an upload's ``id`` to the routes that read and delete it (stateful clients and
fuzzers follow them)."""

UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: stored and queued. ``status_url`` (and ``Location``) point at its status.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "status_url", "replayed"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
                        "status_url": {"type": "string"},
                        "replayed": {"type": "boolean"},
                        "size": {"type": "integer"},
                        "sha256": {"type": "string"},
                        "container": {"type": "string"},
                        "codec": {"type": "string"},
                        "duration_s": {"type": ["number", "null"]},
                        "sample_rate": {"type": ["integer", "null"]},
                    },
                }
            }
        },
        "links": RECORDING_LINKS,
    },
    400: _error("Empty or malformed body."),
    403: _error("X-Tenant names a tenant the API key does not belong to."),
    409: _error("An upload with the same Idempotency-Key is still in progress."),
    413: _error("Larger than the upload limit."),
    415: _error("Not audio, an unreadable container, or data that does not decode as the codec the header names."),
    422: _error(
        "Invalid X-Tenant, X-Priority, X-Model or X-Language header; or audio that is truncated, holds no "
        "samples or is longer than KUBESCRIBE_INGEST_MAX_DURATION_S."
    ),
    429: _error("The tenant has too many recordings in flight; retry after ``Retry-After`` seconds."),
}


def not_ready_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The 409 of a result route (``what`` is "transcribed" or "summarized")."""
    return {409: _error(f"Not {what} yet; the body names the current stage.")}


AUDIO_SCHEMA = {"type": "string", "format": "binary", "minLength": 1}
"""At least one byte: an empty body (or file part) is a 400."""

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The audio: a raw body with an audio/* Content-Type, or multipart/form-data with a "
        "`file` field. Streamed: any size up to the limit (KUBESCRIBE_INGEST_MAX_UPLOAD_BYTES).",
        "content": {
            "audio/*": {"schema": AUDIO_SCHEMA},
            "application/octet-stream": {"schema": AUDIO_SCHEMA},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": AUDIO_SCHEMA}}
            },
        },
    }
}
"""The upload's request body as the route reads it (see the module docstring)."""
