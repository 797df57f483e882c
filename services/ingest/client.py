"""Submitting recordings from Python: over HTTP to the ingest API, or directly over NATS.

:func:`publish_recording` is the one piece of code that publishes a recording directly: it puts
the bytes into the ``audio`` Object Store, then publishes ``AudioReceived`` pointing at them
(the same order ingest uses, so a consumer never sees an event without its object). Used by
``kubescribe submit --nats`` and by the load generator.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from pydantic import ValidationError

from services.common.errors import InvalidEventError, KubescribeError
from services.common.events import AudioReceived, Priority
from services.common.ids import new_id
from services.common.messaging import publish_event
from services.common.storage import delete_object, put_stream
from services.common.telemetry import StageSpan, tracer
from services.common.topology import AUDIO_BUCKET
from services.ingest.probe import probe_file

READ_SIZE = 1 << 20
"""Read files a MiB at a time: few syscalls, bounded memory."""

Progress = Callable[[int], None]
"""Called with the number of bytes just sent."""


class SubmitError(KubescribeError):
    """The ingest API refused an upload; the message carries its status and reason."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after if retry_after and retry_after.isdigit() else None


CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".webm": "audio/webm",
}
"""The project's one suffix → media type map for uploads (the CLI, direct publishing, loadgen).
Explicit, because ``mimetypes`` varies by platform (``audio/x-wav``, ``video/webm``)."""


def content_type_of(path: Path) -> str:
    """The media type an upload of ``path`` declares: the map, else an ``audio/*`` guess, else octet-stream."""
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed if guessed and guessed.startswith("audio/") else "application/octet-stream"


async def _file_chunks(path: Path, progress: Progress | None = None) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, READ_SIZE):
            if progress:
                progress(len(chunk))
            yield chunk


async def publish_recording(
    js: JetStreamContext,
    path: Path,
    *,
    tenant: str = "default",
    priority: Priority | str = Priority.normal,
    source: str = "kubescribe/client",
    recording_id: str | None = None,
    model: str | None = None,
    language: str | None = None,
    max_bytes: int = 20 << 30,
    progress: Progress | None = None,
    probe: bool = True,
) -> AudioReceived:
    """Put ``path`` into the ``audio`` store and publish its ``AudioReceived``; returns the event.

    With ``probe`` (the default) the file's header is read first, so non-audio is refused here
    (``UnsupportedAudioError``) and the event carries the duration the dispatcher packs jobs by.
    The event is built before anything is stored, so an invalid tenant stores nothing. If the
    publish fails the object is deleted again.
    """
    path = Path(path)
    duration = (await asyncio.to_thread(probe_file, path)).duration_s if probe else None
    recording_id = recording_id or new_id()
    try:
        draft = _draft(path, recording_id, source, tenant, priority, duration, model, language)
    except ValueError as exc:  # pydantic's ValidationError, or an unknown Priority
        reason = "; ".join(e["msg"] for e in exc.errors()[:3]) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidEventError(f"cannot submit {path.name}: {reason}") from exc
    with tracer("kubescribe.ingest").start_as_current_span(
        StageSpan.INGEST,
        context=otel_context.Context(),  # the root of the recording's trace, as for HTTP uploads
        attributes={"kubescribe.recording_id": recording_id, "kubescribe.tenant": tenant},
    ):
        return await _put_and_publish(js, draft, path, max_bytes, progress)


def _draft(
    path: Path,
    recording_id: str,
    source: str,
    tenant: str,
    priority: Priority | str,
    duration: float | None,
    model: str | None,
    language: str | None,
) -> AudioReceived:
    """The event, validated before anything is stored (its object reference is filled in later)."""
    return AudioReceived(
        source=source,
        recording_id=recording_id,
        tenant=tenant,
        priority=Priority(priority),
        audio={"bucket": AUDIO_BUCKET, "name": recording_id},
        content_type=content_type_of(path),
        filename=path.name[:512],
        duration_s=duration,
        model=model,
        language=language,
    )


async def _put_and_publish(
    js: JetStreamContext, draft: AudioReceived, path: Path, max_bytes: int, progress: Progress | None
) -> AudioReceived:
    recording_id = draft.recording_id
    ref = await put_stream(
        js,
        AUDIO_BUCKET,
        recording_id,
        _file_chunks(path, progress),
        max_bytes=max_bytes,
        content_type=draft.content_type,
    )
    event = draft.model_copy(update={"audio": ref})
    try:
        await publish_event(js, event)
    except BaseException:
        await asyncio.shield(delete_object(js, ref))
        raise
    return event


async def _async_http_body(path: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    async for chunk in _file_chunks(path, progress):
        yield chunk


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def delete_recording(client: httpx.AsyncClient, recording_id: str, *, token: str | None = None) -> None:
    """``DELETE /v1/recordings/{id}``; raises :class:`SubmitError` with the API's reason unless 204."""
    response = await client.delete(f"/v1/recordings/{recording_id}", headers=auth_headers(token))
    if response.status_code != 204:
        raise SubmitError(f"deleting {recording_id} failed: HTTP {response.status_code}: {response.text[:300]}")


async def upload_file(
    client: httpx.AsyncClient,
    path: Path,
    *,
    tenant: str | None = None,
    priority: str | None = None,
    idempotency_key: str | None = None,
    model: str | None = None,
    language: str | None = None,
    token: str | None = None,
    progress: Progress | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """POST ``path`` as a raw body to ``/v1/recordings``; returns the 202 body.

    The one HTTP upload of the project (``kubescribe submit`` and the load generator's
    ``HttpTarget``). The file is streamed from disk, unless the caller already holds its bytes
    in ``data`` (a replay reads small recordings before its clock starts).
    """
    path = Path(path)
    headers = {
        "Content-Type": content_type_of(path),
        "Content-Length": str(len(data) if data is not None else path.stat().st_size),
        "X-Filename": path.name,
        **auth_headers(token),
    }
    optional = {
        "X-Tenant": tenant,
        "X-Priority": priority,
        "X-Model": model,
        "X-Language": language,
        "Idempotency-Key": idempotency_key,
    }
    headers.update({name: value for name, value in optional.items() if value})
    body = data if data is not None else _async_http_body(path, progress)
    response = await client.post("/v1/recordings", content=body, headers=headers)
    if response.status_code != 202:
        raise SubmitError(
            f"{path.name}: HTTP {response.status_code}: {response_reason(response)}",
            status=response.status_code,
            retry_after=response.headers.get("retry-after"),
        )
    try:
        return dict(response.json())
    except (ValueError, TypeError) as exc:
        raise SubmitError(f"{path.name}: HTTP 202 without a JSON body: {response.text[:200]}", status=202) from exc


def response_reason(response: httpx.Response) -> str:
    """The reason an ingest error response gives (its ``detail``), for one-line messages."""
    try:
        body = response.json()
        return str(body.get("detail") or body)[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


RETRYABLE_STATUSES = frozenset({429, 503})
"""Answers a client retries after their ``Retry-After``: NATS away (503), the tenant's in-flight limit (429)."""
"""The server kept nothing and said so (NATS away): the same request, with the same key, later."""


async def upload_with_retry(
    client: httpx.AsyncClient,
    path: Path,
    *,
    idempotency_key: str,
    deadline_s: float = 120.0,
    backoff_s: float = 0.5,
    **options: Any,
) -> dict[str, Any]:
    """:func:`upload_file` as a client should retry it: on a lost connection, a 503 or a 429 (NATS
    away, or the tenant's in-flight limit; after their ``Retry-After``) or a 409 ``in_progress`` (a
    claim left by an ingest that died mid-upload, taken over once stale), always with the same
    ``Idempotency-Key``, so a retry of an upload that did get through returns the same recording
    instead of a second one."""
    give_up = asyncio.get_running_loop().time() + deadline_s
    delay = backoff_s
    while True:
        try:
            return await upload_file(client, path, idempotency_key=idempotency_key, **options)
        except httpx.TransportError:
            wait = delay
        except SubmitError as exc:
            if exc.status not in RETRYABLE_STATUSES and exc.status != 409:
                raise
            wait = max(delay, float(exc.retry_after or 0))
        if asyncio.get_running_loop().time() + wait > give_up:
            raise SubmitError(f"{path.name}: gave up retrying after {deadline_s:g}s")
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
