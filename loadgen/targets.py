"""Where a replay sends its recordings: the ingest API over HTTP, or NATS directly.

Both implement :class:`Target`: ``submit`` one item's audio and return the recording id the
system assigned. Neither holds upload logic of its own: :class:`HttpTarget` calls
:func:`services.ingest.client.upload_file` (the ``kubescribe submit`` upload) and
:class:`NatsTarget` calls :func:`services.ingest.client.publish_recording`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from nats.js import JetStreamContext

from loadgen.errors import TargetError
from loadgen.trace import TraceItem
from services.common.ids import new_id
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.ingest.client import SubmitError, auth_headers, publish_recording, upload_file

SOURCE = "kubescribe/loadgen"


@dataclass(frozen=True)
class Audio:
    """A rendered recording; ``data`` is None for large files, which are streamed at send time."""

    path: Path
    data: bytes | None
    duration_s: float | None
    size: int = 0


class Target(Protocol):
    """Where submissions go; ``submit`` returns the recording id the system assigned."""

    description: str

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str: ...

    async def aclose(self) -> None: ...


class HttpTarget:
    """``POST /v1/recordings`` on the ingest API (raw body, headers for tenant and priority).

    The connection pool is unbounded: with a slow ingest, a bounded pool would make arrivals
    queue inside the client, which is exactly the closed-loop behaviour a replay must avoid.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 300.0) -> None:
        self.description = url
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers=auth_headers(token),
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str:
        try:
            body = await upload_file(
                self.client,
                audio.path,
                data=audio.data,
                tenant=item.tenant,
                priority=item.priority.value,
                model=item.model,
                language=item.language,
                # Retrying the same replay item never stores a recording twice.
                idempotency_key=f"loadgen-{run_id}-{item.id}",
            )
        except httpx.HTTPError as exc:
            raise TargetError(f"upload of {item.id} to {self.description} failed: {type(exc).__name__}: {exc}") from exc
        except SubmitError as exc:
            raise TargetError(f"ingest answered {exc.status} for {item.id}: {exc}") from exc
        try:
            return str(body["id"])
        except KeyError as exc:
            raise TargetError(f"ingest answered without a recording id: {str(body)[:300]}") from exc

    async def aclose(self) -> None:
        await self.client.aclose()


class NatsTarget:
    """Direct publishing through :func:`services.ingest.client.publish_recording` (the object,
    then ``AudioReceived``), as a client system would.

    Before publishing it creates the recording's status with a ``received`` timestamp (the HTTP
    path gets one from ingest; a direct event otherwise starts at the dispatcher's ``queued``),
    so job completion times start at submission on both paths. A failed publish deletes it again.
    """

    def __init__(self, js: JetStreamContext, *, description: str = "nats") -> None:
        self.js = js
        self.description = description
        self._status: StatusStore | None = None

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str:
        recording_id = new_id()
        if self._status is None:
            self._status = await StatusStore.open(self.js)

        def create() -> RecordingStatus:
            return RecordingStatus(
                recording_id=recording_id,
                tenant=item.tenant,
                priority=item.priority,
                filename=audio.path.name,
                duration_s=audio.duration_s,
            )

        try:
            await self._status.update(recording_id, lambda s: s.advance(RecordingStage.received), create=create)
            await publish_recording(
                self.js,
                audio.path,
                tenant=item.tenant,
                priority=item.priority,
                source=SOURCE,
                recording_id=recording_id,
                model=item.model,
                language=item.language,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._status.kv.delete(recording_id)
            raise TargetError(f"direct publish of {item.id} failed: {type(exc).__name__}: {exc}") from exc
        return recording_id

    async def aclose(self) -> None:
        return None
