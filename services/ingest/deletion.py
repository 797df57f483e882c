"""Deleting a recording for good: objects, status, idempotency claim, then ``RecordingDeleted``.

Order matters. The tombstone goes first, so a job transcribing the recording, or the summarizer
waiting on the LLM, drops it instead of writing a transcript or summary back after the delete
(:mod:`services.common.tombstones`). Then every trace the recording owns is *purged* from its
stream subject, not merely deleted: a plain Object Store or KV delete leaves a marker message
with the object's name, and "no trace" means none. The status KV entry gets a purge first (so
watchers such as the in-flight count see it go), then its subject is emptied.

Events already in the streams carry references, not content; they expire with the streams'
``max_age`` like the tombstone.
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.common.events import ObjectRef, RecordingDeleted
from services.common.messaging import publish_event
from services.common.status import StatusStore
from services.common.storage import delete_object
from services.common.tombstones import mark_deleted
from services.common.topology import (
    AUDIO_BUCKET,
    IDEMPOTENCY_BUCKET,
    STATUS_BUCKET,
    SUMMARIES_BUCKET,
    TRANSCRIPTS_BUCKET,
)
from services.ingest.idempotency import IdempotencyClaims

SOURCE = "kubescribe/ingest"
OWNED_BUCKETS = (AUDIO_BUCKET, TRANSCRIPTS_BUCKET, SUMMARIES_BUCKET)
"""Every stage names its object after the recording id, so these are all the objects a recording owns."""


async def delete_recording(
    js: JetStreamContext,
    status: StatusStore,
    claims: IdempotencyClaims,
    recording_id: str,
    *,
    tenant: str,
    reason: str = "request",
) -> RecordingDeleted:
    """Remove everything ``recording_id`` owns and publish :class:`RecordingDeleted`. Idempotent: a
    second call finds nothing more to remove and publishes nothing."""
    await mark_deleted(js, recording_id, tenant=tenant)
    removed = [
        f"{bucket}/{recording_id}"
        for bucket in OWNED_BUCKETS
        if await delete_object(js, ObjectRef(bucket=bucket, name=recording_id))
    ]
    for key in await claims.forget(recording_id):
        await js.purge_stream(f"KV_{IDEMPOTENCY_BUCKET}", subject=f"$KV.{IDEMPOTENCY_BUCKET}.{key}")
        removed.append(f"{IDEMPOTENCY_BUCKET}/{key}")
    if await status.get(recording_id) is not None:
        removed.append(f"{STATUS_BUCKET}/{recording_id}")
    with contextlib.suppress(NotFoundError):
        await status.kv.purge(recording_id)
    await js.purge_stream(f"KV_{STATUS_BUCKET}", subject=f"$KV.{STATUS_BUCKET}.{recording_id}")
    event = RecordingDeleted(source=SOURCE, recording_id=recording_id, tenant=tenant, reason=reason, removed=removed)
    if removed:
        await publish_event(js, event)
    return event
