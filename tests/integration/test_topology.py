"""The JetStream topology against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.common.events import AudioReceived, ObjectRef
from services.common.ids import new_id
from services.common.nats_client import last_message
from services.common.settings import StreamSettings
from services.common.status import RecordingStage, StatusStore
from services.common.topology import (
    AUDIO_STREAM,
    DIRECT_KV_BUCKETS,
    KV_BUCKETS,
    STATUS_BUCKET,
    STREAMS,
    ensure_topology,
)

pytestmark = pytest.mark.nats


async def test_ensure_topology_twice_is_a_no_op(js) -> None:
    assert await ensure_topology(js) == []
    for spec in STREAMS:
        info = await js.stream_info(spec.name)
        assert info.config.subjects == list(spec.subjects)


async def test_ensure_topology_updates_config_in_place(js) -> None:
    changed = await ensure_topology(js, StreamSettings(max_age_s=3600))
    assert AUDIO_STREAM in changed
    assert (await js.stream_info(AUDIO_STREAM)).config.max_age == 3600
    assert AUDIO_STREAM in await ensure_topology(js)  # back to the defaults
    assert await ensure_topology(js) == []


async def test_duplicate_msg_id_is_stored_once(js) -> None:
    event = AudioReceived(source="tests", recording_id=new_id(), audio=ObjectRef(bucket="audio", name="x"))
    before = (await js.stream_info(AUDIO_STREAM)).state.messages
    first = await js.publish(event.SUBJECT, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    second = await js.publish(event.SUBJECT, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    assert second.duplicate and not first.duplicate
    assert (await js.stream_info(AUDIO_STREAM)).state.messages == before + 1


async def test_concurrent_stage_updates_are_all_kept(js) -> None:
    store = await StatusStore.open(js)
    recording_id = new_id()
    await store.advance(recording_id, RecordingStage.received)

    async def record(i: int) -> None:
        await store.update(recording_id, lambda s: (s.metrics.__setitem__(f"writer_{i}", float(i)), s)[1])

    await asyncio.gather(*(record(i) for i in range(50)))
    status = await store.get(recording_id)
    assert status is not None
    assert {f"writer_{i}" for i in range(50)} <= set(status.metrics)


async def test_stage_never_moves_backwards(js) -> None:
    store = await StatusStore.open(js)
    recording_id = new_id()
    await store.advance(recording_id, RecordingStage.transcribed)
    status = await store.advance(recording_id, RecordingStage.dispatched)  # a late redelivery
    assert status.stage is RecordingStage.transcribed
    assert set(status.timestamps) == {"transcribed", "dispatched"}


async def test_concurrent_writers_in_two_stores_are_all_kept(js) -> None:
    """Each store writes against the revision it remembers; the other store's writes move it, so
    most writes are refused once and re-read: none may be lost."""
    first, second = await StatusStore.open(js), await StatusStore.open(js)
    recording_id = new_id()
    await first.advance(recording_id, RecordingStage.received)

    async def record(store: StatusStore, i: int) -> None:
        await store.update(recording_id, lambda s: (s.metrics.__setitem__(f"writer_{i}", float(i)), s)[1])

    await asyncio.gather(*(record(first if i % 2 else second, i) for i in range(40)))
    status = await first.get(recording_id)
    assert status is not None
    assert {f"writer_{i}" for i in range(40)} <= set(status.metrics)


class StatusReads:
    """Counts the status bucket's direct gets (``js.get_last_msg`` on ``KV_recordings``)."""

    def __init__(self, js, monkeypatch) -> None:
        self.count = 0
        read = js.get_last_msg

        async def counted(stream, *args, **kwargs):
            self.count += stream == "KV_recordings"
            return await read(stream, *args, **kwargs)

        monkeypatch.setattr(js, "get_last_msg", counted)


async def test_a_store_writes_its_next_update_without_reading_back(js, monkeypatch) -> None:
    store = await StatusStore.open(js)
    reads = StatusReads(js, monkeypatch)
    recording_id = new_id()
    await store.advance(recording_id, RecordingStage.received)
    for stage in (RecordingStage.queued, RecordingStage.dispatched, RecordingStage.running):
        await store.advance(recording_id, stage)
    assert reads.count == 2  # the first update learns the key is new (a direct get, confirmed by the leader)

    other = await StatusStore.open(js)
    await other.advance(recording_id, RecordingStage.transcribed)  # moves the revision on
    status = await store.advance(recording_id, RecordingStage.summarizing)
    assert reads.count == 4  # the other store read once, and the refused write re-read the bucket once
    assert set(status.timestamps) >= {"received", "queued", "dispatched", "running", "transcribed", "summarizing"}
    assert (await other.get(recording_id)).stage is RecordingStage.summarizing


async def test_a_status_read_for_update_is_the_base_of_the_next_write(js, monkeypatch) -> None:
    """The summarizer and the dispatcher read a status to decide, then write it at once: read
    ``for_update``, the write needs no read of its own; a stale base is refused and re-read."""
    writer, reader = await StatusStore.open(js), await StatusStore.open(js)
    recording_id = new_id()
    await writer.advance(recording_id, RecordingStage.received)
    reads = StatusReads(js, monkeypatch)
    assert (await reader.get(recording_id, for_update=True)).stage is RecordingStage.received
    await reader.advance(recording_id, RecordingStage.queued)
    assert reads.count == 1  # the get; the write went out against the revision it read

    await reader.get(recording_id, for_update=True)
    await writer.advance(recording_id, RecordingStage.dispatched)  # moves the revision on meanwhile
    status = await reader.advance(recording_id, RecordingStage.running)
    assert reads.count == 4  # the get, the writer's refused write re-reading, the reader's refused write re-reading
    assert set(status.timestamps) >= {"received", "queued", "dispatched", "running"}

    await reader.get(recording_id)  # a plain read is not a base: the next write reads again
    await reader.advance(recording_id, RecordingStage.transcribed)
    assert reads.count == 5  # the get; the write used the revision this store wrote last


async def test_status_and_tombstone_buckets_allow_direct_gets(js) -> None:
    for bucket, description in KV_BUCKETS:
        info = await js.stream_info(f"KV_{bucket}")
        assert bool(info.config.allow_direct) is (bucket in DIRECT_KV_BUCKETS), description
    info = await js.stream_info(f"KV_{STATUS_BUCKET}")
    info.config.allow_direct = False  # a bucket made by an earlier version
    await js.update_stream(info.config)
    assert f"{STATUS_BUCKET}" in await ensure_topology(js)
    assert (await js.stream_info(f"KV_{STATUS_BUCKET}")).config.allow_direct


async def test_last_message_reads_direct_and_confirms_absence(js) -> None:
    stream = f"KV_{STATUS_BUCKET}"
    store = await StatusStore.open(js)
    recording_id = new_id()
    with pytest.raises(NotFoundError):
        await last_message(js, stream, f"$KV.{STATUS_BUCKET}.{recording_id}")
    await store.advance(recording_id, RecordingStage.received)
    msg = await last_message(js, stream, f"$KV.{STATUS_BUCKET}.{recording_id}")
    assert b'"received"' in msg.data and msg.seq


async def test_last_message_reads_a_stream_without_direct_gets_through_its_leader(js) -> None:
    name = f"NODIRECT_{new_id()}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], storage=StorageType.MEMORY))
    try:
        await js.publish(f"{name}.x", b"payload")
        assert (await last_message(js, name, f"{name}.x")).data == b"payload"
    finally:
        await js.delete_stream(name)
