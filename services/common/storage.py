"""Object Store access shared by the services: bytes in, bytes out, files for large audio.

Events carry :class:`~services.common.events.ObjectRef` pointers; these helpers resolve them
and translate nats-py's errors into ours (a missing object is a permanent failure).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from services.common.errors import MissingObjectError
from services.common.events import ObjectRef


async def put_bytes(js: JetStreamContext, bucket: str, name: str, data: bytes) -> ObjectRef:
    """Store a small document (transcript, summary) and return its reference."""
    store = await js.object_store(bucket)
    info = await store.put(name, data)
    return ObjectRef(bucket=bucket, name=name, size=info.size, sha256=hashlib.sha256(data).hexdigest())


async def get_bytes(js: JetStreamContext, ref: ObjectRef) -> bytes:
    """The whole object in memory: for documents, not for audio (use :func:`get_to_file`)."""
    store = await js.object_store(ref.bucket)
    try:
        result = await store.get(ref.name)
    except (ObjectNotFoundError, NotFoundError) as exc:
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist") from exc
    return bytes(result.data or b"")


async def get_to_file(js: JetStreamContext, ref: ObjectRef, path: Path) -> int:
    """Stream an object to ``path`` chunk by chunk (bounded memory); returns its size in bytes."""
    store = await js.object_store(ref.bucket)
    try:
        with open(path, "wb") as handle:
            result = await store.get(ref.name, writeinto=handle)
    except (ObjectNotFoundError, NotFoundError) as exc:
        path.unlink(missing_ok=True)
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist") from exc
    return int(result.info.size or 0)


async def object_exists(js: JetStreamContext, ref: ObjectRef) -> bool:
    store = await js.object_store(ref.bucket)
    try:
        info = await store.get_info(ref.name)
    except (ObjectNotFoundError, NotFoundError):
        return False
    return not info.deleted
