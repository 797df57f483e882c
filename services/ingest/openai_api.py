"""The OpenAI-compatible transcription API: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

The route is a synchronous face on the normal pipeline, not a second engine: the upload goes
into the audio Object Store and out as ``AudioReceived`` through :class:`IngestService` (so it
is packed, dispatched, traced and summarized like any other recording), then the request waits
on the status KV watch until the transcript exists, for at most ``KUBESCRIBE_OPENAI_WAIT_S``.
Past that it answers 504 with the recording id, and the client polls ``/v1/recordings/{id}``.

Every error, including the bearer check and form validation, is answered in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` by :class:`OpenAIRoute`, so the official
SDK raises its typed exceptions (``BadRequestError`` for a bad file) with our message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from nats.errors import TimeoutError as NatsTimeoutError
from starlette.datastructures import FormData, UploadFile

from services.common.documents import Transcript
from services.common.errors import UnsupportedAudioError
from services.common.events import Priority
from services.common.ids import new_id
from services.common.settings import Settings
from services.common.status import RecordingStage, RecordingStatus
from services.common.storage import ObjectTooLargeError, get_bytes
from services.ingest.errors import ApiError, UnavailableError
from services.ingest.formats import MEDIA_TYPES, RENDERERS
from services.ingest.routes import PrincipalDep, acting_tenant, checked_callback_url, get_service, require_token
from services.ingest.service import IngestService
from services.ingest.upload import Upload

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
FORM_FIELDS = 16
"""Form fields besides ``file`` (OpenAI sends at most eight); more is a malformed request."""
CHUNK = 1 << 16


class OpenAIError(Exception):
    """An answer in OpenAI's error shape; ``param`` names the offending form field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.extra = status, message, param, code, extra
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}
        # The SDK retries 5xx by default; a retried upload would transcribe the recording again.
        headers = {"x-should-retry": "false"} if self.status in (500, 504) else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


def as_openai_error(exc: Exception) -> OpenAIError | None:
    """The OpenAI form of the API's own errors (raised by the service, the upload reader, the auth)."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, UnsupportedAudioError):
        return OpenAIError(400, f"Invalid file format: {exc}", param="file", code="invalid_file_format")
    if isinstance(exc, ApiError):
        if exc.status == 415:  # the upload reader's "not audio": OpenAI answers a bad file with 400
            return OpenAIError(400, exc.detail, param="file", code="invalid_file_format")
        if exc.status == 401:
            return OpenAIError(401, exc.detail, code="invalid_api_key")
        return OpenAIError(exc.status, exc.detail, code=exc.code)
    if isinstance(exc, ObjectTooLargeError):
        return OpenAIError(
            413, f"the file is larger than the limit of {exc.limit} bytes", param="file", code="too_large"
        )
    if isinstance(exc, UnavailableError):
        return OpenAIError(503, exc.detail, code="unavailable")
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return OpenAIError(400, f"{param}: {first.get('msg', 'invalid request')}", param=param, code="invalid_value")
    if isinstance(exc, HTTPException):
        return OpenAIError(exc.status_code, str(exc.detail))
    return None


class OpenAIRoute(APIRoute):
    """Answers the errors of its route, and of its dependencies, in OpenAI's shape.

    Dependencies (the bearer check) run inside the route handler, so wrapping the handler here
    covers them too; the app's handlers keep answering every other route in kubescribe's shape.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                error = as_openai_error(exc)
                if error is None:
                    raise
                if request.method == "POST":
                    request.app.state.service.metrics.rejections.labels(error.code or str(error.status)).inc()
                return error.response()

        return route


router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(require_token)], tags=["openai"])
"""OpenAI-compatible routes, behind the same bearer check as every other /v1 route."""

TRANSCRIPTION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string", "default": "whisper-1"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(GRANULARITIES)},
                        },
                        "callback_url": {"type": "string", "description": "Signed webhook on completion."},
                    },
                }
            }
        },
    }
}


def served_models(settings: Settings) -> list[str]:
    """The Whisper models this deployment serves (see :class:`OpenAISettings.models`)."""
    if settings.openai.models:
        return list(dict.fromkeys(settings.openai.models))
    return list(dict.fromkeys([settings.dispatcher.default_model, *settings.dispatcher.tenant_models.values()]))


@router.get("/models", summary="Whisper models served (OpenAI-compatible)")
async def list_models(request: Request) -> JSONResponse:
    settings = get_service(request).settings
    names = [settings.openai.default_alias, *served_models(settings)]
    return JSONResponse(
        {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "kubescribe"} for n in names],
        }
    )


@router.post(
    "/audio/transcriptions",
    summary="Transcribe a file and wait for the transcript (OpenAI-compatible)",
    openapi_extra=TRANSCRIPTION_BODY,
    responses={
        400: {"description": "Bad file or form field (OpenAI error shape)."},
        504: {"description": "Not transcribed within KUBESCRIBE_OPENAI_WAIT_S; `error.recording_id` to poll."},
    },
)
async def create_transcription(request: Request, principal: PrincipalDep) -> Response:
    service = get_service(request)
    settings = service.settings
    tenant = acting_tenant(principal, request.headers.get("x-tenant"))
    limit = settings.ingest.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + (1 << 20):  # the form's own fields are small
        raise OpenAIError(413, f"the body is {int(length)} bytes; the limit is {limit} bytes", param="file")
    try:
        form = await request.form(max_files=1, max_fields=FORM_FIELDS)
    except HTTPException as exc:  # Starlette's multipart errors
        raise OpenAIError(400, f"malformed multipart body: {exc.detail}", code="bad_multipart") from exc
    try:
        return await _transcribe(request, service, settings, tenant, form)
    finally:
        await form.close()


async def _transcribe(
    request: Request, service: IngestService, settings: Settings, tenant: str, form: FormData
) -> Response:
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise OpenAIError(400, "the multipart body has no `file` field with the audio", param="file")
    response_format = _field(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(
            400,
            f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
    for value in granularities:
        if value not in GRANULARITIES:
            raise OpenAIError(
                400, f"timestamp_granularities {value!r} is not one of segment, word", param="timestamp_granularities"
            )
    words = "word" in granularities
    if granularities and response_format != "verbose_json":
        raise OpenAIError(
            400, "timestamp_granularities needs response_format=verbose_json", param="timestamp_granularities"
        )
    model = _model(settings, _field(form, "model"))
    temperature = _temperature(_field(form, "temperature"))
    prompt = _field(form, "prompt")
    options = {"word_timestamps": words or None, "prompt": prompt or None, "temperature": temperature}
    recording_id = new_id()
    upload = Upload(_chunks(file), file.content_type or "application/octet-stream", file.filename)
    await upload.prime()
    await service.accept_upload(
        upload,
        recording_id=recording_id,
        tenant=tenant,
        priority=Priority.high,  # somebody is waiting on this request: interactive, like GAIE's objective
        model=model,
        language=_field(form, "language"),
        callback_url=checked_callback_url(_field(form, "callback_url")),
        options={k: v for k, v in options.items() if v is not None},
    )
    transcript = await wait_for_transcript(service, recording_id, settings.openai.wait_s, request)
    return render(transcript, response_format, words=words, temperature=temperature)


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value or None
    raise OpenAIError(400, f"form field {name!r} must be a value, not a file", param=name)


def _model(settings: Settings, requested: str | None) -> str | None:
    """None (the dispatcher's choice, per tenant) for the alias; a served model by name; else 400."""
    if requested in (None, settings.openai.default_alias):
        return None
    served = served_models(settings)
    if requested not in served:
        raise OpenAIError(
            400,
            f"model {requested!r} is not served here; use one of {', '.join([settings.openai.default_alias, *served])}",
            param="model",
            code="model_not_found",
        )
    return requested


def _temperature(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        temperature = float(value)
    except ValueError:
        temperature = -1.0
    if not 0 <= temperature <= 1:
        raise OpenAIError(400, f"temperature {value!r} must be a number from 0 to 1", param="temperature")
    return temperature


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await file.read(CHUNK):
        yield chunk


async def wait_for_transcript(service: IngestService, recording_id: str, wait_s: float, request: Request) -> Transcript:
    """Watch the recording's status until its transcript exists; 504 (with the id) after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    watcher = await service.status.kv.watch(recording_id)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                entry = await watcher.updates(timeout=min(remaining, 5.0))
            except (TimeoutError, NatsTimeoutError):
                continue
            if entry is None or not entry.value:  # the end-of-history marker, or a delete
                continue
            status = RecordingStatus.model_validate_json(entry.value)
            if status.transcript is not None:
                return Transcript.model_validate_json(await get_bytes(service.js, status.transcript))
            if status.stage is RecordingStage.failed:
                raise _failure(status)
    finally:
        await watcher.stop()
    base = (service.settings.ingest.public_url or str(request.base_url)).rstrip("/")
    raise OpenAIError(
        504,
        f"recording {recording_id} was not transcribed within {wait_s:g}s; it is still being processed: "
        f"poll GET /v1/recordings/{recording_id}",
        code="transcription_timeout",
        type="timeout",
        recording_id=recording_id,
        status_url=f"{base}/v1/recordings/{recording_id}",
    )


def _failure(status: RecordingStatus) -> OpenAIError:
    reason = f"recording {status.recording_id} failed at {status.error_stage or 'unknown'}: {status.error}"
    if status.retryable is False and status.error_stage in ("ingest", "transcribe"):
        return OpenAIError(400, reason, param="file", code="invalid_file_format", recording_id=status.recording_id)
    return OpenAIError(500, reason, code="transcription_failed", recording_id=status.recording_id)


def render(transcript: Transcript, response_format: str, *, words: bool, temperature: float | None) -> Response:
    """The transcript in OpenAI's ``response_format``."""
    if response_format == "json":
        return JSONResponse({"text": transcript.text})
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(RENDERERS[response_format](transcript), media_type=MEDIA_TYPES[response_format])
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": transcript.language,
        "duration": transcript.audio_s,
        "text": transcript.text,
        "segments": [
            {
                "id": index,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                **({"temperature": temperature} if temperature is not None else {}),
            }
            for index, segment in enumerate(transcript.segments)
        ],
    }
    if words:
        body["words"] = [
            {"word": word.word, "start": word.start, "end": word.end}
            for segment in transcript.segments
            for word in segment.words or ()
        ]
    return JSONResponse(body)
