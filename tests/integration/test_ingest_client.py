"""Direct NATS publishing (``services.ingest.client``) and ``put_stream`` against a real nats-server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.common.errors import InvalidEventError, UnsupportedAudioError
from services.common.events import AudioReceived, ObjectRef, parse_event
from services.common.storage import ObjectTooLargeError, get_bytes, put_stream
from services.common.topology import AUDIO_BUCKET, AUDIO_RECEIVED, AUDIO_STREAM
from services.ingest.client import content_type_of, publish_recording
from tests.integration.ingest_support import store_counts
from tests.speech import SENTENCES, duration_of, synthesize

pytestmark = pytest.mark.nats


async def _pieces(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_publish_recording_puts_then_publishes(js, tmp_path) -> None:
    path = synthesize(SENTENCES[1], tmp_path / "direct.ogg")
    progress: list[int] = []
    event = await publish_recording(js, path, tenant="acme", priority="low", progress=progress.append)

    msg = await js.get_last_msg(AUDIO_STREAM, AUDIO_RECEIVED)
    assert msg.headers["Nats-Msg-Id"] == event.id
    published = parse_event(AudioReceived, msg.data)
    assert published == event
    assert (published.tenant, published.priority.value, published.filename) == ("acme", "low", "direct.ogg")
    assert published.duration_s == pytest.approx(duration_of(path), abs=0.05)
    assert sum(progress) == path.stat().st_size
    data = await get_bytes(js, published.audio)  # nats-py's reader verifies our digest
    assert data == path.read_bytes() and published.audio.sha256 == hashlib.sha256(data).hexdigest()


async def test_publish_recording_refuses_non_audio_and_stores_nothing(js, tmp_path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all\n" * 50)
    before = await store_counts(js)
    with pytest.raises(UnsupportedAudioError):
        await publish_recording(js, path)
    assert await store_counts(js) == before


@pytest.mark.parametrize("size", [0, 1, 128 * 1024, 128 * 1024 + 1, 3 * 1024 * 1024 + 17])
async def test_put_stream_matches_nats_py_reader(js, size) -> None:
    data = bytes(i % 251 for i in range(size))
    ref = await put_stream(js, AUDIO_BUCKET, f"put-stream-{size}", _pieces(data, 7000), max_bytes=1 << 30)
    assert ref.size == size and ref.sha256 == hashlib.sha256(data).hexdigest()
    assert await get_bytes(js, ref) == data
    info = await (await js.object_store(AUDIO_BUCKET)).get_info(ref.name)
    assert info.size == size and info.chunks == -(-size // (128 * 1024))


async def test_put_stream_replacing_an_object_purges_the_old_chunks(js) -> None:
    name = "put-stream-replaced"
    await put_stream(js, AUDIO_BUCKET, name, _pieces(b"a" * 300_000, 50_000), max_bytes=1 << 30)
    before = await store_counts(js)
    ref = await put_stream(js, AUDIO_BUCKET, name, _pieces(b"b" * 300_000, 50_000), max_bytes=1 << 30)
    assert await get_bytes(js, ref) == b"b" * 300_000
    assert await store_counts(js) == before  # 3 new chunks in, 3 old chunks out, meta rolled up


async def test_put_stream_failures_leave_no_chunks(js) -> None:
    before = await store_counts(js)
    with pytest.raises(ObjectTooLargeError):
        await put_stream(js, AUDIO_BUCKET, "too-big", _pieces(b"x" * (5 << 20), 64 << 10), max_bytes=4 << 20)

    async def broken():
        yield b"x" * (1 << 20)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await put_stream(js, AUDIO_BUCKET, "broken", broken(), max_bytes=1 << 30)

    async def refuse(ref: ObjectRef) -> None:
        raise UnsupportedAudioError("nope")

    with pytest.raises(UnsupportedAudioError):
        await put_stream(
            js, AUDIO_BUCKET, "refused", _pieces(b"y" * 400_000, 10_000), max_bytes=1 << 30, before_commit=refuse
        )
    assert await store_counts(js) == before


async def test_publish_recording_validates_before_storing(js, tmp_path) -> None:
    path = synthesize(SENTENCES[5], tmp_path / "v.wav")
    before = await store_counts(js)
    for bad in ({"tenant": "Bad_Tenant"}, {"priority": "urgent"}):
        with pytest.raises(InvalidEventError, match=r"cannot submit v\.wav"):
            await publish_recording(js, path, **bad)
    assert await store_counts(js) == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.wav", "audio/wav"),
        ("A.WAV", "audio/wav"),
        ("a.mp3", "audio/mpeg"),
        ("a.opus", "audio/ogg"),
        ("a.webm", "audio/webm"),
        ("a.txt", "application/octet-stream"),
    ],
)
def test_one_content_type_map(name, expected) -> None:
    """Uploads (CLI, loadgen) and direct publishing declare the same type, whatever the platform's mimetypes."""
    assert content_type_of(Path(name)) == expected
