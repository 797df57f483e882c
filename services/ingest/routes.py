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
from services.common.tombstones import deleted_tenant
from services.common.topology import AUDIO_BUCKET, AUDIO_STREAM
from services.ingest.auth import BearerAuth
from services.ingest.availability import nats_problem
from services.ingest.deletion import delete_recording
from services.ingest.errors import ApiError
from services.ingest.formats import MEDIA_TYPES, RENDERERS
from services.ingest.idempotency import claim_key
from services.ingest.keys import Principal
from services.ingest.responses import ERROR_RESPONSES, UPLOAD_BODY, UPLOAD_RESPONSES, not_ready_responses
from services.ingest.service import IngestService
from services.notifier.urls import check_callback_url
from services.summarizer.render import render_markdown

_TENANT_RE = re.compile(TENANT_PATTERN)


def get_service(request: Request) -> IngestService:
    """The app's :class:`IngestService` (started by its lifespan)."""
    return request.app.state.service


def get_settings(service: Annotated[IngestService, Depends(get_service)]) -> Settings:
    return service.settings


async def require_token(request: Request) -> Principal:
    """The bearer check of every /v1 route, answered in the API's error shape (not FastAPI's)."""
    auth: BearerAuth = request.app.state.auth
    try:
        return await auth(request)
    except HTTPException as exc:
        raise ApiError(401, "unauthorized", exc.detail) from exc


def checked_callback_url(url: str | None) -> str | None:
    """A per-upload webhook URL, checked for shape here (reachability is the notifier's SSRF guard)."""
    if url is None:
        return None
    try:
        return check_callback_url(url)
    except ValueError as exc:
        raise ApiError(422, "invalid_callback_url", str(exc)) from exc


ServiceDep = Annotated[IngestService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(require_token)]


def acting_tenant(principal: Principal, requested: str | None) -> str:
    """The tenant a request acts for: the key's own; only an admin key (or no auth) may name one in X-Tenant."""
    if not principal.admin:
        assert principal.tenant is not None
        if requested is not None and requested != principal.tenant:
            raise ApiError(
                403,
                "tenant_forbidden",
                f"this API key belongs to tenant {principal.tenant!r} and cannot act for {requested!r}: "
                "drop X-Tenant or use a key of that tenant",
            )
        return principal.tenant
    tenant = requested or "default"
    if not _TENANT_RE.match(tenant):
        raise ApiError(422, "invalid_tenant", f"X-Tenant {tenant!r} is not a DNS label (a-z, 0-9, -; ≤63)")
    return tenant


router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)
"""Recordings: upload, status and results, behind the bearer check."""
probes = APIRouter()
"""Liveness, readiness and metrics: never behind auth (kubelet and Prometheus call them)."""


@router.post(
    "/recordings",
    status_code=202,
    summary="Upload a recording",
    operation_id="upload_recording",
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_RESPONSES,
)
async def upload(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    callback_url: str | None = None,
) -> JSONResponse:
    """Stream the body into the audio Object Store, probe it and publish AudioReceived.

    Headers: ``Idempotency-Key`` (same key and tenant → same id, nothing stored twice),
    ``X-Tenant`` (a DNS label), ``X-Priority`` (low | normal | high), ``X-Model``, ``X-Language``.
    Query ``callback_url``: a signed webhook on completion (docs/webhooks.md).
    """
    headers = request.headers
    tenant = acting_tenant(principal, headers.get("x-tenant"))
    callback_url = checked_callback_url(callback_url)
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
    lease = service.claims.keep_fresh(claim, recording_id, revision) if claim and revision is not None else None
    try:  # the lease renews the claim while the body streams: a live upload is never taken over
        _check_in_flight(service, settings, tenant)
        with service.inflight.uploading(tenant):
            body = await service.accept(
                request,
                recording_id=recording_id,
                tenant=tenant,
                priority=priority,
                model=headers.get("x-model"),
                language=headers.get("x-language"),
                callback_url=callback_url,
            )
    except BaseException:  # also on cancellation: a failed upload must not be replayed
        if claim and lease is not None:
            await asyncio.shield(service.claims.release(claim, await lease.stop()))
        raise
    if lease is not None:
        await lease.stop()
    return _accepted(request, settings, body, replayed=False)


@router.get("/recordings/{recording_id}", summary="Status of a recording", operation_id="get_recording")
async def get_status(
    recording_id: str, request: Request, service: ServiceDep, settings: SettingsDep, principal: PrincipalDep
) -> JSONResponse:
    """Stage, job id, per-stage timestamps, error if any, and links to the results."""
    status = await _status(service, recording_id, principal)
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
    operation_id="get_transcript",
    responses=not_ready_responses("transcribed"),
)
async def get_transcript(
    recording_id: str,
    service: ServiceDep,
    principal: PrincipalDep,
    format: Literal["json", "txt", "srt", "vtt"] = "json",
) -> Response:
    """JSON (text, segments with timestamps), or rendered as txt, srt or vtt."""
    status = await _status(service, recording_id, principal)
    if status.transcript is None:
        raise _not_ready(status, "transcript")
    transcript = Transcript.model_validate_json(await _document(service, status.transcript))
    if format == "json":
        return JSONResponse(transcript.model_dump(mode="json"))
    return PlainTextResponse(RENDERERS[format](transcript), media_type=MEDIA_TYPES[format])


@router.get(
    "/recordings/{recording_id}/summary",
    summary="Summary of a recording",
    operation_id="get_summary",
    responses=not_ready_responses("summarized"),
)
async def get_summary(
    recording_id: str, service: ServiceDep, principal: PrincipalDep, format: Literal["json", "md"] = "json"
) -> Response:
    """JSON (text, and title, key points, decisions, action items when structured), or Markdown."""
    status = await _status(service, recording_id, principal)
    if status.summary is None:
        raise _not_ready(status, "summary")
    summary = Summary.model_validate_json(await _document(service, status.summary))
    if format == "md":
        return PlainTextResponse(render_markdown(summary), media_type="text/markdown; charset=utf-8")
    return JSONResponse(summary.model_dump(mode="json"))


@router.delete(
    "/recordings/{recording_id}",
    status_code=204,
    summary="Delete a recording",
    operation_id="delete_recording",
    response_class=Response,
    responses={204: {"description": "Deleted (or already deleted): audio, transcript, summary and status."}},
)
async def delete(recording_id: str, service: ServiceDep, principal: PrincipalDep) -> Response:
    """Remove the audio, transcript, summary, status and idempotency claim; a job still working on it
    drops it. Idempotent: deleting again answers 204 to the recording's tenant."""
    if not is_valid_id(recording_id):
        raise ApiError(404, "not_found", f"{recording_id!r} is not a recording id (a 26-character ULID)")
    status = await service.status.get(recording_id)
    tenant = status.tenant if status is not None else await deleted_tenant(service.js, recording_id)
    if tenant is None or not (principal.admin or tenant == principal.tenant):
        raise ApiError(404, "not_found", f"no recording {recording_id}")
    await delete_recording(service.js, service.status, service.claims, recording_id, tenant=tenant)
    return Response(status_code=204)


@probes.get("/healthz", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get(
    "/readyz",
    summary="Readiness: NATS connected and the topology present",
    responses={503: {"description": "Not ready; ``problems`` says why."}},
)
async def readyz(service: ServiceDep) -> JSONResponse:
    problems = []
    if problem := nats_problem(service.nc):
        problems.append(problem)
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


async def _status(service: IngestService, recording_id: str, principal: Principal) -> RecordingStatus:
    """The recording's status, if the caller may see it: another tenant's recording is 404, as if absent,
    so ids of other tenants cannot even be probed for existence."""
    if not is_valid_id(recording_id):
        raise ApiError(404, "not_found", f"{recording_id!r} is not a recording id (a 26-character ULID)")
    status = await service.status.get(recording_id)
    if status is None or not (principal.admin or status.tenant == principal.tenant):
        raise ApiError(404, "not_found", f"no recording {recording_id}")
    return status


IN_FLIGHT_RETRY_AFTER_S = 10
"""What a 429 asks the client to wait: about the time a short recording takes to clear the pipeline."""


def _check_in_flight(service: IngestService, settings: Settings, tenant: str) -> None:
    limit = settings.ingest.tenant_max_in_flight.get(tenant, settings.ingest.max_in_flight)
    if limit and (count := service.inflight.count(tenant)) >= limit:
        raise ApiError(
            429,
            "too_many_in_flight",
            f"tenant {tenant!r} has {count} recordings in flight; the limit is {limit} "
            "(KUBESCRIBE_INGEST_MAX_IN_FLIGHT): retry when some have finished",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        )


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
