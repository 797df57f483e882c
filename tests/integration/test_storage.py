"""Object Store reads by the two-request path, checked against nats-py's own reader and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import MissingObjectError
from services.common.events import ObjectRef
from services.common.ids import new_id
from services.common.status import RecordingStatus, StatusStore
from services.common.storage import OBJECT_CHUNK_SIZE, get_bytes, get_stored, get_to_file, object_exists, put_bytes
from services.common.tombstones import deleted_tenant, mark_deleted, status_for_update
from services.common.topology import DELETED_BUCKET, TRANSCRIPTS_BUCKET

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("size", [0, 1, OBJECT_CHUNK_SIZE, OBJECT_CHUNK_SIZE + 1, 3 * OBJECT_CHUNK_SIZE + 7])
async def test_reads_and_writes_agree_with_nats_py_at_every_chunk_count(js, tmp_path: Path, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    store = await js.object_store(TRANSCRIPTS_BUCKET)
    ours, theirs = new_id(), new_id()
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, ours, data)
    await store.put(theirs, data)
    assert (await store.get(ours)).data == data  # nats-py reads what put_bytes wrote
    for name in (ours, theirs):
        other = ObjectRef(bucket=TRANSCRIPTS_BUCKET, name=name)
        assert await get_bytes(js, other) == data
        assert await get_to_file(js, other, tmp_path / name) == size
        assert (tmp_path / name).read_bytes() == data
        assert await object_exists(js, other)
    assert ref.size == size


async def test_a_replaced_object_reads_as_its_new_bytes(js) -> None:
    name = new_id()
    await put_bytes(js, TRANSCRIPTS_BUCKET, name, b"first")
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, name, b"second, longer")
    assert await get_bytes(js, ref) == b"second, longer"


async def test_missing_and_deleted_objects_are_missing(js) -> None:
    missing = ObjectRef(bucket=TRANSCRIPTS_BUCKET, name=new_id())
    with pytest.raises(MissingObjectError):
        await get_bytes(js, missing)
    assert not await object_exists(js, missing)
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, new_id(), b"gone soon")
    await (await js.object_store(TRANSCRIPTS_BUCKET)).delete(ref.name)
    with pytest.raises(MissingObjectError):
        await get_bytes(js, ref)
    assert not await object_exists(js, ref)


async def test_a_tombstone_is_read_in_one_request_and_a_deleted_key_is_none(js) -> None:
    rid = new_id()
    assert await deleted_tenant(js, rid) is None
    await mark_deleted(js, rid, tenant="acme")
    assert await deleted_tenant(js, rid) == "acme"
    await (await js.key_value(DELETED_BUCKET)).delete(rid)
    assert await deleted_tenant(js, rid) is None


async def test_a_stored_document_is_found_by_name_with_the_reference_put_returned(js) -> None:
    name = new_id()
    assert await get_stored(js, TRANSCRIPTS_BUCKET, name) is None
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, name, b'{"text": "stored"}')
    assert await get_stored(js, TRANSCRIPTS_BUCKET, name) == (ref, b'{"text": "stored"}')


async def test_status_for_update_reads_the_status_and_the_tombstone_together(js) -> None:
    store = await StatusStore.open(js)
    live, gone, absent = new_id(), new_id(), new_id()
    for rid in (live, gone):
        await store.update(rid, lambda s: s, create=lambda rid=rid: RecordingStatus(recording_id=rid))
    await mark_deleted(js, gone, tenant="acme")
    reader = await StatusStore.open(js)  # a stage's own store: nothing remembered yet
    status, deleted = await status_for_update(js, reader, live)
    assert status is not None and status.recording_id == live and not deleted
    assert (await status_for_update(js, reader, gone))[1] is True
    assert await status_for_update(js, reader, absent) == (None, False)
    assert live in reader._written  # read for update: the next write starts from it, with no read of its own
