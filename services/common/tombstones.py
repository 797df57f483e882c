"""Tombstones of deleted recordings: what a stage checks before it writes anything.

``DELETE /v1/recordings/{id}`` removes a recording's objects and status at once, but a job may
be transcribing it or the summarizer may be waiting on the LLM. Without a mark, they would write
the transcript or summary (and a status) back after the delete. The tombstone is that mark: a
key in the ``deleted`` KV bucket holding only the deletion time and the tenant (so a repeated
DELETE answers 204 to its owner and 404 to anyone else; no name, nothing of the recording), kept
as long as an event about it can still be in a stream, then expired by the bucket's TTL.
"""

from __future__ import annotations

import asyncio
import json
import time

from nats.js import JetStreamContext

from services.common.nats_client import kv_value
from services.common.status import RecordingStatus, StatusStore
from services.common.topology import DELETED_BUCKET


async def mark_deleted(js: JetStreamContext, recording_id: str, *, tenant: str) -> None:
    kv = await js.key_value(DELETED_BUCKET)
    await kv.put(recording_id, json.dumps({"at": time.time(), "tenant": tenant}).encode())


async def deleted_tenant(js: JetStreamContext, recording_id: str) -> str | None:
    """The tenant of a deleted recording, or None when ``recording_id`` was not deleted.

    One direct get of the key's last message in the bucket's stream: every stage asks this for
    every recording, and ``js.key_value(...).get`` costs a STREAM.INFO first. A follower's stale
    "not deleted" is the same as a deletion landing a moment after the check: a race every stage
    already tolerates.
    """
    msg = await kv_value(js, DELETED_BUCKET, recording_id, confirm_absence=False)
    if msg is None:
        return None
    return str(json.loads(msg.data).get("tenant", "default"))


async def is_deleted(js: JetStreamContext, recording_id: str) -> bool:
    """True when ``recording_id`` was deleted: the caller must drop it and write nothing."""
    return await deleted_tenant(js, recording_id) is not None


async def status_for_update(
    js: JetStreamContext, store: StatusStore, recording_id: str
) -> tuple[RecordingStatus | None, bool]:
    """A recording's status, read for update (:meth:`StatusStore.get`), and whether it was deleted.

    Every stage asks both before it works on a recording (the dispatcher, each transcriber turn,
    the summarizer), and neither answer depends on the other: sent together, the two requests
    leave in one socket write and their replies come back in one read, a round trip less per
    stage. A deletion between the two reads is the race every stage already tolerates (the
    tombstone is checked again before anything is written).
    """
    status, deleted = await asyncio.gather(store.get(recording_id, for_update=True), is_deleted(js, recording_id))
    return status, deleted
