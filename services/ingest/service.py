"""The upload service: stream a request body into the ``audio`` Object Store, then ``AudioReceived``.

An accepted recording is never lost and a rejected one leaves nothing behind. The order is
object stored (chunks, probe, then the meta message) → status written → event published;
when publishing fails the object and the status are removed again and the client gets 503,
so a retry starts clean. HTTP lives in :mod:`services.ingest.routes`; this module only
knows the request's headers and body stream, and raises the errors of
:mod:`services.ingest.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from fastapi import Request
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from services.common.errors import KubescribeError
from services.common.events import AudioReceived, ObjectRef, Priority, utcnow
from services.common.messaging import publish_event
from services.common.nats_client import connect
from services.common.settings import Settings
from services.common.status import RecordingStage, RecordingStatus, StatusStore, WebhookDelivery
from services.common.storage import delete_object, put_stream
from services.common.telemetry import StageSpan, current_traceparent, tracer
from services.common.topology import AUDIO_BUCKET, IDEMPOTENCY_BUCKET, ensure_topology
from services.ingest.errors import ApiError, UnavailableError
from services.ingest.idempotency import IdempotencyClaims
from services.ingest.inflight import InFlight
from services.ingest.integrity import check_audio
from services.ingest.metrics import IngestMetrics
from services.ingest.probe import AudioInfo, probe_file
from services.ingest.retention import RetentionSweeper
from services.ingest.upload import Spool, Upload, UploadError, open_upload

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/ingest"


class IngestService:
    """The NATS-side state of the API: connection, status store, idempotency claims, metrics.

    Built with the app and started by its lifespan, so building the app (for the OpenAPI
    document) connects nowhere.
    """

    def __init__(self, settings: Settings, nc: NatsClient | None) -> None:
        self.settings = settings
        self.nc = nc
        self.owns_nc = nc is None
        self.metrics = IngestMetrics()
        self._js: JetStreamContext | None = None
        self._status: StatusStore | None = None
        self._claims: IdempotencyClaims | None = None
        self.inflight = InFlight()
        self.retention: RetentionSweeper | None = None

    @property
    def js(self) -> JetStreamContext:
        """One context for the service's life: each JetStreamContext subscribes its own reply inbox
        on its first ``publish_async`` and never drops it, so a context per request (as before)
        left one subscription per upload on the connection and on the server (1,500 after 1,500)."""
        assert self.nc is not None, "the app's lifespan has not run"
        if self._js is None:
            self._js = self.nc.jetstream()
        return self._js

    @property
    def status(self) -> StatusStore:
        assert self._status is not None, "the app's lifespan has not run"
        return self._status

    @property
    def claims(self) -> IdempotencyClaims:
        assert self._claims is not None, "the app's lifespan has not run"
        return self._claims

    async def start(self) -> None:
        if self.nc is None:
            self.nc = await connect(self.settings.nats, name="kubescribe-ingest")
            await ensure_topology(self.nc.jetstream(), self.settings.streams)
        self._status = await StatusStore.open(self.js)
        self._claims = IdempotencyClaims(await self.js.key_value(IDEMPOTENCY_BUCKET), self._status)
        await self.inflight.start(self._status.kv)
        self.retention = RetentionSweeper(self.js, self._status, self._claims, self.settings.ingest)
        self.retention.start()

    async def stop(self) -> None:
        if self.retention is not None:
            await self.retention.stop()
        await self.inflight.stop()
        if self.owns_nc and self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def accept(
        self,
        request: Request,
        *,
        recording_id: str,
        tenant: str,
        priority: Priority,
        model: str | None,
        language: str | None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Stream the request body as an upload: see :meth:`accept_upload`."""
        with _library_errors_as_unavailable():
            arrived_at = utcnow()  # the recording's end-to-end clock starts when its upload starts
            upload = open_upload(_body(request), request.headers.get("content-type"))
            await upload.prime()
            if not upload.filename and (header_name := request.headers.get("x-filename")):
                upload.filename = os.path.basename(header_name)
        return await self.accept_upload(
            upload,
            recording_id=recording_id,
            tenant=tenant,
            priority=priority,
            model=model,
            language=language,
            callback_url=callback_url,
            arrived_at=arrived_at,
        )

    async def accept_upload(
        self,
        upload: Upload,
        *,
        recording_id: str,
        tenant: str,
        priority: Priority,
        model: str | None,
        language: str | None,
        callback_url: str | None = None,
        options: dict[str, Any] | None = None,
        arrived_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Stream, probe, store, write the status and publish; roll everything back on failure.

        ``options`` are further optional ``AudioReceived`` fields (word_timestamps, prompt,
        temperature: the OpenAI route's); ``callback_url`` goes into the status for the notifier.
        """
        arrived_at = arrived_at or utcnow()
        with _library_errors_as_unavailable():
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
                        info = await asyncio.to_thread(probe_file, spool.source())
                        limit = self.settings.ingest.max_duration_s
                        await asyncio.to_thread(check_audio, spool.source(), info, max_duration_s=limit)
                        probed.append(info)

                    ref = await put_stream(
                        self.js,
                        AUDIO_BUCKET,
                        recording_id,
                        spool.tee(upload.chunks()),
                        max_bytes=self.settings.ingest.max_upload_bytes,
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
                        **(options or {}),
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
                        webhook=WebhookDelivery(url=callback_url) if callback_url else None,
                    ).advance(RecordingStage.received, at=arrived_at)
                    # A fresh id: create, never overwrite (the CAS read of StatusStore.update would only
                    # cost a round trip here).
                    await self.status.kv.create(recording_id, status.model_dump_json().encode())
                    await publish_event(self.js, event)
                except Exception as exc:
                    # NATS errors become one line (OneLineNatsErrors); anything else keeps its traceback.
                    logger.warning("could not publish recording %s; rolling back", recording_id, exc_info=True)
                    with contextlib.suppress(Exception):
                        await delete_object(self.js, ref)
                    with contextlib.suppress(Exception):
                        await self.status.kv.purge(recording_id)
                    raise UnavailableError(f"NATS is unavailable ({type(exc).__name__}); retry") from exc
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


@contextlib.contextmanager
def _library_errors_as_unavailable() -> Iterator[None]:
    """Errors raised on purpose (:class:`KubescribeError`) pass; anything else is a library error
    of the store, translated here at the boundary into a 503 that keeps its cause."""
    try:
        yield
    except KubescribeError:
        raise
    except Exception as exc:
        logger.warning("upload failed", exc_info=True)  # one line for NATS errors (OneLineNatsErrors)
        raise UnavailableError(f"could not store the upload ({type(exc).__name__}); retry") from exc


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise UploadError(400, "disconnected", "the client disconnected before the body was complete") from exc


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
