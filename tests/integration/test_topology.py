"""The JetStream topology against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from services.common.events import AudioReceived, ObjectRef
from services.common.ids import new_id
from services.common.settings import StreamSettings
from services.common.status import RecordingStage, StatusStore
from services.common.topology import AUDIO_STREAM, STREAMS, ensure_topology

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
