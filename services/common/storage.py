"""Object Store access shared by the services: bytes in, bytes out, files for large audio.

Events carry :class:`~services.common.events.ObjectRef` pointers; these helpers resolve them
and translate nats-py's errors into ours (a missing object is a permanent failure).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ObjectNotFoundError

from services.common.errors import KubescribeError, MissingObjectError
from services.common.events import ObjectRef
from services.common.nats_client import last_message

logger = logging.getLogger(__name__)

OBJECT_CHUNK_SIZE = 128 * 1024
"""Same chunk size as nats-py's ``ObjectStore.put``, so every client reads our objects as its own."""
MAX_INFLIGHT_CHUNKS = 32
"""Chunk publishes awaiting their ack: 32 x 128 KiB = 4 MiB in flight bounds memory, and is
deep enough that the loopback round trip never idles the pipe."""


class ObjectTooLargeError(KubescribeError):
    """A streamed object went over ``max_bytes``; what was written of it has been purged."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"object is larger than the limit of {limit} bytes")
        self.limit = limit


async def put_bytes(js: JetStreamContext, bucket: str, name: str, data: bytes) -> ObjectRef:
    """Store a small document (transcript, summary) and return its reference.

    Through :func:`put_stream`, not nats-py's ``ObjectStore.put``: that one first asks for the
    stream's info (``js.object_store``) and then for the old object's info, two round trips
    before the first byte; here the old object's chunk id is looked up while the chunk is sent.
    """

    async def whole() -> AsyncIterator[bytes]:
        yield data

    return await put_stream(js, bucket, name, whole(), max_bytes=len(data))


async def get_bytes(js: JetStreamContext, ref: ObjectRef) -> bytes:
    """The whole object in memory: for documents, not for audio (use :func:`get_to_file`)."""
    small = await _read_single_chunk(js, ref)
    if small is not None:
        return small
    store = await js.object_store(ref.bucket)
    try:
        result = await store.get(ref.name)
    except (ObjectNotFoundError, NotFoundError) as exc:
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist") from exc
    return bytes(result.data or b"")


async def get_stored(js: JetStreamContext, bucket: str, name: str) -> tuple[ObjectRef, bytes] | None:
    """A document stored under a known name and the reference :func:`put_bytes` returned for it
    (size and SHA-256 of the content), or ``None`` when nothing is stored there.

    For a stage that stores under a deterministic name (the recording id) and, redelivered after
    a crash, must tell whether its earlier attempt got as far as storing."""
    try:
        data = await get_bytes(js, ObjectRef(bucket=bucket, name=name))
    except MissingObjectError:
        return None
    return ObjectRef(bucket=bucket, name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest()), data


async def get_to_file(js: JetStreamContext, ref: ObjectRef, path: Path) -> int:
    """Stream an object to ``path`` chunk by chunk (bounded memory); returns its size in bytes."""
    small = await _read_single_chunk(js, ref)
    if small is not None:
        path.write_bytes(small)
        return len(small)
    store = await js.object_store(ref.bucket)
    try:
        with open(path, "wb") as handle:
            result = await store.get(ref.name, writeinto=handle)
    except (ObjectNotFoundError, NotFoundError) as exc:
        path.unlink(missing_ok=True)
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist") from exc
    return int(result.info.size or 0)


async def object_exists(js: JetStreamContext, ref: ObjectRef) -> bool:
    try:
        await _object_info(js, ref)
    except MissingObjectError:
        return False
    return True


async def _object_info(js: JetStreamContext, ref: ObjectRef) -> dict:
    """The object's meta message (its info), one request; a missing or deleted object is MissingObjectError."""
    try:
        msg = await last_message(js, f"OBJ_{ref.bucket}", _meta_subject(ref.bucket, ref.name))
    except NotFoundError as exc:
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist") from exc
    info = json.loads(msg.data or b"{}")
    if info.get("deleted"):
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not exist")
    return info


async def _read_single_chunk(js: JetStreamContext, ref: ObjectRef) -> bytes | None:
    """An object of at most one chunk (every transcript, summary and short clip), in two requests:
    its meta, then its chunk by subject. nats-py's ``get`` asks for the stream's info and then
    creates an ordered consumer to read the chunks and deletes it again: several round trips and a
    consumer's life on the server per read, which made reads the largest part of the control
    plane's cost per recording. None for a larger object: the caller streams it through nats-py.
    The digest is checked as nats-py checks it."""
    info = await _object_info(js, ref)
    chunks = int(info.get("chunks") or 0)
    if chunks > 1:
        return None
    data = b""
    if chunks == 1:
        try:
            data = (await last_message(js, f"OBJ_{ref.bucket}", _chunk_subject(ref.bucket, info["nuid"]))).data or b""
        except NotFoundError as exc:
            raise MissingObjectError(f"object {ref.bucket}/{ref.name} has lost its data") from exc
    digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    if len(data) != int(info.get("size") or 0) or (info.get("digest") and info["digest"] != digest):
        raise MissingObjectError(f"object {ref.bucket}/{ref.name} does not match its digest")
    return data


def _meta_subject(bucket: str, name: str) -> str:
    """Where an object's info lives (nats-py's and the Go client's layout)."""
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _chunk_subject(bucket: str, nuid: str) -> str:
    """Where the chunks of the object whose info names ``nuid`` live (the same layout)."""
    return f"$O.{bucket}.C.{nuid}"


async def put_stream(
    js: JetStreamContext,
    bucket: str,
    name: str,
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    before_commit: Callable[[ObjectRef], Awaitable[None]] | None = None,
    chunk_size: int = OBJECT_CHUNK_SIZE,
    max_inflight: int = MAX_INFLIGHT_CHUNKS,
    ack_timeout: float = 10.0,
    content_type: str | None = None,
    replace: bool = True,
) -> ObjectRef:
    """Write an object from an async byte stream, in the Object Store wire format, with bounded memory.

    Chunk publishes are pipelined (up to ``max_inflight`` unacknowledged) instead of awaited one
    by one as nats-py's ``ObjectStore.put`` does, so large uploads are not bound by the round trip.
    The object becomes visible only when its meta message is published, after every chunk is
    acknowledged and ``before_commit`` (e.g. an audio probe) accepted it. On any failure,
    including going over ``max_bytes``, a raising ``before_commit`` or cancellation, the chunks
    written so far are purged, so nothing is orphaned, and the error propagates.

    ``replace=False`` skips looking up an existing object of the same name (whose chunks a
    replacing put purges): one request less for names that are new by construction (ULIDs).
    """
    stream = f"OBJ_{bucket}"
    nuid = js._nc._nuid.next().decode()  # the same id source nats-py uses for chunk subjects
    chunk_subject = _chunk_subject(bucket, nuid)
    meta_subject = _meta_subject(bucket, name)
    existing = asyncio.ensure_future(_previous_nuid(js, stream, meta_subject) if replace else _nothing())
    inflight: collections.deque[asyncio.Future] = collections.deque()
    digest = hashlib.sha256()
    buffer = bytearray()
    size = 0
    sent = 0

    async def send(payload: bytes) -> None:
        nonlocal sent
        while len(inflight) >= max_inflight:
            await _ack(inflight.popleft(), ack_timeout)
        inflight.append(await js.publish_async(chunk_subject, payload))
        sent += 1

    try:
        async for piece in chunks:
            if not piece:
                continue
            size += len(piece)
            if size > max_bytes:
                raise ObjectTooLargeError(max_bytes)
            digest.update(piece)
            buffer += piece
            while len(buffer) >= chunk_size:
                payload = bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
                await send(payload)
        if buffer:
            await send(bytes(buffer))
            buffer.clear()
        while inflight:
            await _ack(inflight.popleft(), ack_timeout)
        ref = ObjectRef(bucket=bucket, name=name, size=size, sha256=digest.hexdigest())
        if before_commit is not None:
            await before_commit(ref)
        info = api.ObjectInfo(
            name=name,
            bucket=bucket,
            nuid=nuid,
            size=size,
            chunks=sent,
            mtime=datetime.now(UTC).isoformat(),
            digest="SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode(),
            options=api.ObjectMetaOptions(max_chunk_size=chunk_size),
            headers={"Content-Type": [content_type]} if content_type else None,
        )
        await js.publish(
            meta_subject, json.dumps(info.as_dict()).encode(), headers={api.Header.ROLLUP: "sub"}, timeout=ack_timeout
        )
    except BaseException:
        existing.cancel()
        # Chunks still in flight may be stored after a purge that overtook them: wait for their
        # acks (or errors) first, then purge.
        await asyncio.shield(_rollback(js, stream, chunk_subject, list(inflight), ack_timeout))
        raise
    previous = await existing
    if previous and previous != nuid:
        await _purge(js, stream, _chunk_subject(bucket, previous))
    return ref


async def _nothing() -> None:
    return None


async def _rollback(
    js: JetStreamContext, stream: str, subject: str, inflight: list[asyncio.Future], timeout: float
) -> None:
    if inflight:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(*inflight, return_exceptions=True), timeout)
    await _purge(js, stream, subject)


async def _ack(future: asyncio.Future, timeout: float) -> None:
    await asyncio.wait_for(future, timeout)


async def _previous_nuid(js: JetStreamContext, stream: str, meta_subject: str) -> str | None:
    """Chunk id of an object this put replaces (its chunks are purged after the new meta is written)."""
    try:
        # Usually absent (a first put). A lagging follower's "absent" for a replaced object only
        # leaves the old chunks to expire with max_age; not worth a leader read on every put.
        msg = await last_message(js, stream, meta_subject, confirm_absence=False)
    except NotFoundError:
        return None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = json.loads(msg.data or b"{}")
        if not data.get("deleted"):
            return data.get("nuid")
    return None


async def _purge(js: JetStreamContext, stream: str, subject: str) -> None:
    try:
        await js.purge_stream(stream, subject=subject)
    except Exception:  # the caller's error matters more; the object has no meta, so it is invisible
        # NATS away or electing a leader is one line (OneLineNatsErrors); the orphaned chunks are
        # unreachable and go with the stream's max_age.
        logger.warning(
            "could not purge chunks %s of %s; they expire with the stream's max_age", subject, stream, exc_info=True
        )


async def delete_object(js: JetStreamContext, ref: ObjectRef) -> bool:
    """Remove an object completely, chunks and every meta message (a delete marker included),
    leaving not even a tombstone: the rollback of a half-done request, and a recording's deletion.
    A missing object is not an error. True if a live object was there."""
    stream = f"OBJ_{ref.bucket}"
    meta_subject = _meta_subject(ref.bucket, ref.name)
    try:
        meta = await js.get_last_msg(stream, meta_subject)
    except NotFoundError:
        return False
    info = json.loads(meta.data or b"{}")
    if nuid := info.get("nuid"):
        await js.purge_stream(stream, subject=_chunk_subject(ref.bucket, nuid))
    await js.purge_stream(stream, subject=meta_subject)
    return not info.get("deleted", False)
