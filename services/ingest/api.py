"""The ingest HTTP API: uploads stream into the ``audio`` Object Store, then ``AudioReceived``.

An accepted recording is never lost and a rejected one leaves nothing behind. The order is
object stored (chunks, probe, then the meta message) → status written → event published;
when publishing fails the object and the status are removed again and the client gets 503,
so a retry starts clean. ``Idempotency-Key`` claims live in the ``idempotency`` KV bucket and
are released when a request fails, so only accepted uploads are replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.documents import Summary, Transcript
from services.common.errors import MissingObjectError, UnsupportedAudioError
from services.common.events import TENANT_PATTERN, AudioReceived, ObjectRef, Priority, utcnow
from services.common.ids import is_valid_id, new_id
from services.common.messaging import publish_event
from services.common.nats_client import connect
from services.common.settings import Settings
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import ObjectTooLargeError, delete_object, get_bytes, put_stream
from services.common.telemetry import StageSpan, current_traceparent, tracer
from services.common.topology import AUDIO_BUCKET, AUDIO_STREAM, IDEMPOTENCY_BUCKET, ensure_topology
from services.ingest.auth import BearerAuth
from services.ingest.formats import MEDIA_TYPES, RENDERERS
from services.ingest.metrics import IngestMetrics
from services.ingest.probe import AudioInfo, probe_file
from services.ingest.upload import Spool, UploadError, open_upload

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/ingest"
IDEMPOTENCY_STALE_S = 900.0
"""A claim whose upload never finished (the process died) may be taken over after this long."""
_TENANT_RE = re.compile(TENANT_PATTERN)


class ApiError(Exception):
    """An error answer: ``{"error": code, "detail": message, ...extra}`` with ``status``."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(
            {"error": self.code, "detail": self.detail, **self.extra}, status_code=self.status, headers=headers
        )


class IngestService:
    """The NATS-side state of the API: connection, status store, idempotency bucket, metrics."""

    def __init__(self, settings: Settings, nc: NatsClient | None) -> None:
        self.settings = settings
        self.nc = nc
        self.owns_nc = nc is None
        self.metrics = IngestMetrics()
        self.status: StatusStore | None = None
        self.claims: KeyValue | None = None

    @property
    def js(self):
        assert self.nc is not None, "the app's lifespan has not run"
        return self.nc.jetstream()

    async def start(self) -> None:
        if self.nc is None:
            self.nc = await connect(self.settings.nats, name="kubescribe-ingest")
            await ensure_topology(self.nc.jetstream(), self.settings.streams)
        self.status = await StatusStore.open(self.js)
        self.claims = await self.js.key_value(IDEMPOTENCY_BUCKET)

    async def stop(self) -> None:
        if self.owns_nc and self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # -- idempotency -----------------------------------------------------------------------

    @staticmethod
    def claim_key(tenant: str, key: str) -> str:
        return hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()

    async def claim(self, claim_key: str, recording_id: str) -> tuple[str, int | None]:
        """Claim ``claim_key`` for ``recording_id``; returns (owner id, our revision or None if not ours)."""
        assert self.claims is not None and self.status is not None
        value = json.dumps({"id": recording_id, "at": time.time()}).encode()
        for _ in range(5):
            try:
                return recording_id, await self.claims.create(claim_key, value)
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self.claims.get(claim_key)
            except KeyNotFoundError:
                continue  # released between our create and get: try again
            claim = json.loads(entry.value or b"{}")
            owner = claim.get("id")
            if owner and await self.status.get(owner) is not None:
                return owner, None
            if time.time() - float(claim.get("at", 0)) < IDEMPOTENCY_STALE_S:
                raise ApiError(
                    409,
                    "in_progress",
                    "an upload with this Idempotency-Key is still in progress; retry when it has finished",
                    id=owner,
                )
            try:  # the owner died mid-upload: take the claim over
                return recording_id, await self.claims.update(claim_key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
        raise ApiError(503, "unavailable", "could not claim the Idempotency-Key; retry")

    async def release(self, claim_key: str, revision: int) -> None:
        assert self.claims is not None
        with contextlib.suppress(Exception):
            await self.claims.delete(claim_key, last=revision)

    # -- accepting a recording -------------------------------------------------------------

    async def accept(
        self,
        request: Request,
        *,
        recording_id: str,
        tenant: str,
        priority: Priority,
        model: str | None,
        language: str | None,
    ) -> dict[str, Any]:
        """Stream, probe, store, write the status and publish; roll everything back on failure."""
        assert self.status is not None
        arrived_at = utcnow()  # the recording's end-to-end clock starts when its upload starts
        limit = self.settings.ingest.max_upload_bytes
        upload = open_upload(_body(request), request.headers.get("content-type"))
        await upload.prime()
        if not upload.filename and (header_name := request.headers.get("x-filename")):
            upload.filename = os.path.basename(header_name)
        probed: list[AudioInfo] = []
        spool = Spool()
        with tracer("kubescribe.ingest").start_as_current_span(
            StageSpan.INGEST,
            context=otel_context.Context(),  # the root of the recording's trace
            kind=trace.SpanKind.SERVER,
            attributes={
                "kubescribe.recording_id": recording_id,
                "kubescribe.tenant": tenant,
                "kubescribe.priority": priority.value,
            },
        ) as span:
            try:

                async def probe(ref: ObjectRef) -> None:
                    probed.append(await asyncio.to_thread(probe_file, spool.source()))

                ref = await put_stream(
                    self.js,
                    AUDIO_BUCKET,
                    recording_id,
                    spool.tee(upload.chunks()),
                    max_bytes=limit,
                    before_commit=probe,
                    content_type=upload.content_type,
                    replace=False,  # a fresh ULID
                )
            finally:
                spool.close()
            info = probed[0]
            span.set_attribute("kubescribe.audio_s", info.duration_s or 0.0)
            traceparent = current_traceparent()
            try:
                event = AudioReceived(
                    source=SOURCE,
                    recording_id=recording_id,
                    tenant=tenant,
                    priority=priority,
                    audio=ref,
                    content_type=upload.content_type,
                    filename=(upload.filename or None) and upload.filename[:512],
                    duration_s=info.duration_s,
                    model=model,
                    language=language,
                )
            except ValidationError as exc:
                await delete_object(self.js, ref)
                raise ApiError(422, "invalid_header", _validation_reason(exc)) from exc
            try:
                status = RecordingStatus(
                    recording_id=recording_id,
                    tenant=tenant,
                    priority=priority,
                    audio=ref,
                    filename=event.filename,
                    duration_s=info.duration_s,
                    traceparent=traceparent,
                    metrics={"audio_s": info.duration_s} if info.duration_s else {},
                ).advance(RecordingStage.received, at=arrived_at)
                # A fresh id: create, never overwrite (the CAS read of StatusStore.update would only
                # cost a round trip here).
                await self.status.kv.create(recording_id, status.model_dump_json().encode())
                await publish_event(self.js, event)
            except Exception as exc:
                logger.exception("could not publish recording %s; rolling back", recording_id)
                with contextlib.suppress(Exception):
                    await delete_object(self.js, ref)
                with contextlib.suppress(Exception):
                    await self.status.kv.purge(recording_id)
                raise ApiError(503, "unavailable", f"NATS is unavailable ({type(exc).__name__}); retry") from exc
        self.metrics.bytes.inc(ref.size or 0)
        self.metrics.upload_size.observe(ref.size or 0)
        self.metrics.accepted.inc()
        return {
            "id": recording_id,
            "size": ref.size,
            "sha256": ref.sha256,
            "container": info.container,
            "codec": info.codec,
            "duration_s": info.duration_s,
            "sample_rate": info.sample_rate,
        }


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise UploadError(400, "disconnected", "the client disconnected before the body was complete") from exc


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


class MetricsMiddleware:
    """Counts and times every request by its route template (not the raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token (only when KUBESCRIBE_API_TOKEN is set)."},
    404: {"description": "Unknown or malformed recording id."},
}

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


def create_app(settings: Settings | None = None, *, nc: NatsClient | None = None) -> FastAPI:
    """The ASGI app. With ``nc`` it uses that connection (and leaves it open); without, its
    lifespan connects with ``settings.nats`` and ensures the topology."""
    settings = settings or Settings()
    service = IngestService(settings, nc)
    auth = BearerAuth(settings.api.api_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(
        title="kubescribe ingest",
        version="1",
        description="Upload recordings; read their status, transcripts and summaries.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.method == "POST" and exc.status >= 400:
            service.metrics.rejections.labels(exc.code).inc()
        return exc.response()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_auth(auth, service))], responses=ERROR_RESPONSES)

    @v1.post(
        "/recordings",
        status_code=202,
        summary="Upload a recording",
        openapi_extra=UPLOAD_BODY,
        responses={
            400: {"description": "Empty or malformed body."},
            409: {"description": "An upload with the same Idempotency-Key is still in progress."},
            413: {"description": "Larger than the upload limit."},
            415: {"description": "Not audio, or an unreadable container header (the reason says which)."},
            422: {"description": "Invalid X-Tenant, X-Priority, X-Model or X-Language header."},
            503: {"description": "NATS is unavailable; nothing was stored."},
        },
    )
    async def upload(request: Request) -> JSONResponse:
        """Stream the body into the audio Object Store, probe it and publish AudioReceived.

        Headers: ``Idempotency-Key`` (same key and tenant → same id, nothing stored twice),
        ``X-Tenant`` (a DNS label), ``X-Priority`` (low | normal | high), ``X-Model``, ``X-Language``.
        """
        headers = request.headers
        tenant = headers.get("x-tenant", "default")
        if not _TENANT_RE.match(tenant):
            raise ApiError(422, "invalid_tenant", f"X-Tenant {tenant!r} is not a DNS label (a-z, 0-9, -; ≤63)")
        try:
            priority = Priority(headers.get("x-priority", "normal").lower())
        except ValueError:
            raise ApiError(
                422, "invalid_priority", f"X-Priority {headers.get('x-priority')!r} is not one of low, normal, high"
            ) from None
        length = headers.get("content-length")
        limit = settings.ingest.max_upload_bytes
        if length and length.isdigit() and int(length) > limit:
            raise ApiError(413, "too_large", f"the body is {int(length)} bytes; the limit is {limit} bytes")

        recording_id = new_id()
        claim_key = claim_revision = None
        if key := headers.get("idempotency-key"):
            claim_key = service.claim_key(tenant, key)
            owner, claim_revision = await service.claim(claim_key, recording_id)
            if claim_revision is None:
                return _accepted(request, settings, {"id": owner}, replayed=True)
        try:
            body = await service.accept(
                request,
                recording_id=recording_id,
                tenant=tenant,
                priority=priority,
                model=headers.get("x-model"),
                language=headers.get("x-language"),
            )
        except BaseException as exc:
            if claim_key and claim_revision is not None:
                await asyncio.shield(service.release(claim_key, claim_revision))
            if isinstance(exc, UploadError):
                raise ApiError(exc.status, exc.code, exc.detail) from exc
            if isinstance(exc, ObjectTooLargeError):
                raise ApiError(413, "too_large", f"the body is larger than the limit of {limit} bytes") from exc
            if isinstance(exc, UnsupportedAudioError):
                raise ApiError(415, "not_audio", str(exc)) from exc
            if isinstance(exc, (ApiError, asyncio.CancelledError)):
                raise
            if isinstance(exc, Exception):
                logger.exception("upload failed")
                raise ApiError(503, "unavailable", f"could not store the upload ({type(exc).__name__}); retry") from exc
            raise
        return _accepted(request, settings, body, replayed=False)

    @v1.get("/recordings/{recording_id}", summary="Status of a recording")
    async def get_status(recording_id: str, request: Request) -> JSONResponse:
        """Stage, job id, per-stage timestamps, error if any, and links to the results."""
        status = await _status(service, recording_id)
        base = _base_url(request, settings)
        links = {"self": f"{base}/v1/recordings/{recording_id}"}
        if status.transcript:
            links["transcript"] = f"{links['self']}/transcript"
        if status.summary:
            links["summary"] = f"{links['self']}/summary"
        body = status.model_dump(mode="json", exclude={"traceparent", "recording_id"})
        return JSONResponse({"id": recording_id, **body, "links": links})

    @v1.get(
        "/recordings/{recording_id}/transcript",
        summary="Transcript of a recording",
        responses={409: {"description": "Not transcribed yet; the body names the current stage."}},
    )
    async def get_transcript(recording_id: str, format: Literal["json", "txt", "srt", "vtt"] = "json") -> Response:
        """JSON (text, segments with timestamps), or rendered as txt, srt or vtt."""
        status = await _status(service, recording_id)
        if status.transcript is None:
            raise _not_ready(status, "transcript")
        transcript = Transcript.model_validate_json(await _document(service, status.transcript))
        if format == "json":
            return JSONResponse(transcript.model_dump(mode="json"))
        return PlainTextResponse(RENDERERS[format](transcript), media_type=MEDIA_TYPES[format])

    @v1.get(
        "/recordings/{recording_id}/summary",
        summary="Summary of a recording",
        responses={409: {"description": "Not summarized yet; the body names the current stage."}},
    )
    async def get_summary(recording_id: str) -> JSONResponse:
        status = await _status(service, recording_id)
        if status.summary is None:
            raise _not_ready(status, "summary")
        summary = Summary.model_validate_json(await _document(service, status.summary))
        return JSONResponse(summary.model_dump(mode="json"))

    app.include_router(v1)

    @app.get("/healthz", summary="Liveness", include_in_schema=True)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: NATS connected and the topology present")
    async def readyz() -> JSONResponse:
        problems = []
        if service.nc is None or not service.nc.is_connected:
            problems.append("NATS is not connected")
        else:
            try:
                await service.js.stream_info(AUDIO_STREAM)
                await service.js.stream_info(f"OBJ_{AUDIO_BUCKET}")
            except Exception as exc:
                problems.append(f"topology missing: {type(exc).__name__}: {exc}")
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app


def _auth(auth: BearerAuth, service: IngestService):
    async def check(request: Request) -> None:
        try:
            await auth(request)
        except Exception as exc:
            raise ApiError(401, "unauthorized", getattr(exc, "detail", "unauthorized")) from exc

    return check


def _base_url(request: Request, settings: Settings) -> str:
    return (settings.ingest.public_url or str(request.base_url)).rstrip("/")


def _accepted(request: Request, settings: Settings, body: dict[str, Any], *, replayed: bool) -> JSONResponse:
    status_url = f"{_base_url(request, settings)}/v1/recordings/{body['id']}"
    headers = {"Location": status_url}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse({**body, "status_url": status_url, "replayed": replayed}, status_code=202, headers=headers)


async def _status(service: IngestService, recording_id: str) -> RecordingStatus:
    if not is_valid_id(recording_id):
        raise ApiError(404, "not_found", f"{recording_id!r} is not a recording id (a 26-character ULID)")
    assert service.status is not None
    status = await service.status.get(recording_id)
    if status is None:
        raise ApiError(404, "not_found", f"no recording {recording_id}")
    return status


async def _document(service: IngestService, ref: ObjectRef) -> bytes:
    try:
        return await get_bytes(service.js, ref)
    except MissingObjectError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc


def _not_ready(status: RecordingStatus, what: str) -> ApiError:
    detail = f"the {what} is not ready: the recording is at stage {status.stage.value!r}"
    if status.stage is RecordingStage.failed:
        detail = f"the recording failed at {status.error_stage or 'unknown'}: {status.error}"
    return ApiError(409, "not_ready", detail, stage=status.stage.value)
