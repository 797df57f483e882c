"""The HTTP routes of the ingest API, on module-level routers; state comes in through dependencies.

Routes parse headers, call :class:`~services.ingest.service.IngestService` and shape the
success answers; errors are raised (see :mod:`services.ingest.errors`) and answered by the
app's exception handlers. The service, the settings and the bearer check are ``Depends``
resolved from ``app.state``, so the routers exist once, at import, and every app (tests
build many) supplies its own state.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.common.documents import Summary, Transcript
from services.common.errors import MissingObjectError
from services.common.events import TENANT_PATTERN, ObjectRef, Priority
from services.common.ids import is_valid_id, new_id
from services.common.settings import Settings
from services.common.status import RecordingStage, RecordingStatus
from services.common.storage import get_bytes
from services.common.topology import AUDIO_BUCKET, AUDIO_STREAM
from services.ingest.auth import BearerAuth
from services.ingest.errors import ApiError
from services.ingest.formats import MEDIA_TYPES, RENDERERS
from services.ingest.idempotency import claim_key
from services.ingest.responses import ERROR_RESPONSES, UPLOAD_BODY, UPLOAD_RESPONSES, not_ready_responses
from services.ingest.service import IngestService
from services.summarizer.render import render_markdown

_TENANT_RE = re.compile(TENANT_PATTERN)


def get_service(request: Request) -> IngestService:
    """The app's :class:`IngestService` (started by its lifespan)."""
    return request.app.state.service


def get_settings(service: Annotated[IngestService, Depends(get_service)]) -> Settings:
    return service.settings


async def require_token(request: Request) -> None:
    """The bearer check of every /v1 route, answered in the API's error shape (not FastAPI's)."""
    auth: BearerAuth = request.app.state.auth
    try:
        await auth(request)
    except HTTPException as exc:
        raise ApiError(401, "unauthorized", exc.detail) from exc


ServiceDep = Annotated[IngestService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)
"""Recordings: upload, status and results, behind the bearer check."""
probes = APIRouter()
"""Liveness, readiness and metrics: never behind auth (kubelet and Prometheus call them)."""


@router.post(
    "/recordings",
    status_code=202,
    summary="Upload a recording",
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_RESPONSES,
)
async def upload(request: Request, service: ServiceDep, settings: SettingsDep) -> JSONResponse:
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
    claim = revision = None
    if key := headers.get("idempotency-key"):
        claim = claim_key(tenant, key)
        owner, revision = await service.claims.claim(claim, recording_id)
        if revision is None:
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
    except BaseException:  # also on cancellation: a failed upload must not be replayed
        if claim and revision is not None:
            await asyncio.shield(service.claims.release(claim, revision))
        raise
    return _accepted(request, settings, body, replayed=False)


@router.get("/recordings/{recording_id}", summary="Status of a recording")
async def get_status(recording_id: str, request: Request, service: ServiceDep, settings: SettingsDep) -> JSONResponse:
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


@router.get(
    "/recordings/{recording_id}/transcript",
    summary="Transcript of a recording",
    responses=not_ready_responses("transcribed"),
)
async def get_transcript(
    recording_id: str, service: ServiceDep, format: Literal["json", "txt", "srt", "vtt"] = "json"
) -> Response:
    """JSON (text, segments with timestamps), or rendered as txt, srt or vtt."""
    status = await _status(service, recording_id)
    if status.transcript is None:
        raise _not_ready(status, "transcript")
    transcript = Transcript.model_validate_json(await _document(service, status.transcript))
    if format == "json":
        return JSONResponse(transcript.model_dump(mode="json"))
    return PlainTextResponse(RENDERERS[format](transcript), media_type=MEDIA_TYPES[format])


@router.get(
    "/recordings/{recording_id}/summary",
    summary="Summary of a recording",
    responses=not_ready_responses("summarized"),
)
async def get_summary(recording_id: str, service: ServiceDep, format: Literal["json", "md"] = "json") -> Response:
    """JSON (text, and title, key points, decisions, action items when structured), or Markdown."""
    status = await _status(service, recording_id)
    if status.summary is None:
        raise _not_ready(status, "summary")
    summary = Summary.model_validate_json(await _document(service, status.summary))
    if format == "md":
        return PlainTextResponse(render_markdown(summary), media_type="text/markdown; charset=utf-8")
    return JSONResponse(summary.model_dump(mode="json"))


@probes.get("/healthz", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz", summary="Readiness: NATS connected and the topology present")
async def readyz(service: ServiceDep) -> JSONResponse:
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


@probes.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=service.metrics.content_type)


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
