"""Bad audio is stopped at the door: 4xx with a reason, and nothing in the Object Store, KV or stream.

Real files of every accepted format (espeak-ng speech through sox; M4A/AAC encoded with PyAV),
then damaged the ways a client or a network damages them: cut short, emptied of samples,
relabelled with a codec their data is not, or longer than the configured limit.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import av
import httpx
import pytest
import pytest_asyncio

from services.common.topology import STATUS_BUCKET
from tests.integration.ingest_support import make_settings, running_ingest, store_counts
from tests.kv import kv_keys
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.nats

MAX_DURATION_S = 30.0
"""The test ingest's duration limit; the long clips are ~70 s."""


def to_m4a(wav: Path, path: Path, *, faststart: bool = False) -> Path:
    """AAC in an MP4 (``ipod``) container, encoded by PyAV; ``faststart`` puts the index first."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(wav)) as source, av.open(str(path), "w", format="ipod", options=options) as sink:
        stream = sink.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for frame in source.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return path


@pytest.fixture(scope="session")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A short clip and a ~70 s clip in each format."""
    directory = tmp_path_factory.mktemp("bad-audio")
    clips: dict[str, Path] = {}
    text = " ".join(SENTENCES)
    for name, spoken in (("short", SENTENCES[0]), ("long", f"{text} {text} {text}")):
        wav = synthesize(spoken, directory / f"{name}.wav")
        clips[f"{name}.wav"] = wav
        for fmt in ("flac", "mp3", "ogg"):
            clips[f"{name}.{fmt}"] = synthesize(spoken, directory / f"{name}.{fmt}")
        clips[f"{name}.m4a"] = to_m4a(wav, directory / f"{name}.m4a")
        clips[f"{name}.fast.m4a"] = to_m4a(wav, directory / f"{name}.fast.m4a", faststart=True)
    return clips


@pytest_asyncio.fixture(loop_scope="session")
async def api(nc, nats_settings):
    settings = make_settings(nats_settings, max_upload_bytes=8 << 20, max_duration_s=MAX_DURATION_S)
    async with running_ingest(settings, nc) as base, httpx.AsyncClient(base_url=base, timeout=60) as client:
        yield client


async def assert_rejected(api, js, body: bytes, status: int, codes: set[str]) -> str:
    """Upload ``body``: it must answer ``status`` with one of ``codes`` and leave nothing anywhere."""
    before = (await store_counts(js), await kv_keys(js, STATUS_BUCKET))
    response = await api.post("/v1/recordings", content=body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] in codes, error
    assert error["detail"], error
    assert (await store_counts(js), await kv_keys(js, STATUS_BUCKET)) == before
    return error["detail"]


@pytest.mark.parametrize("name", ["short.wav", "short.flac", "short.mp3", "short.ogg", "short.m4a", "short.fast.m4a"])
async def test_good_clips_pass(api, good, name) -> None:
    response = await api.post("/v1/recordings", content=good[name].read_bytes(), headers={"Content-Type": "audio/x"})
    assert response.status_code == 202, response.text
    assert response.json()["duration_s"] > 1


async def test_wav_header_promising_samples_it_lacks(api, js, good) -> None:
    """The issue's case: a header that promises a megabyte of samples, and a body that ends after it."""
    header = bytearray(good["short.wav"].read_bytes()[:44])
    assert header[36:40] == b"data"
    header[40:44] = struct.pack("<I", 1 << 20)
    detail = await assert_rejected(api, js, bytes(header), 422, {"truncated"})
    assert "1048576 bytes" in detail


@pytest.mark.parametrize("name", ["short.wav", "short.flac", "short.fast.m4a"])
async def test_body_cut_short_of_its_declared_length(api, js, good, name) -> None:
    data = good[name].read_bytes()
    await assert_rejected(api, js, data[: len(data) // 3], 422, {"truncated"})


@pytest.mark.parametrize("name", ["short.m4a", "short.ogg"])
async def test_cut_container_without_its_index_is_not_audio(api, js, good, name) -> None:
    """An MP4 whose index (at the end) is cut off, an Ogg cut inside its headers: unreadable, 415."""
    data = good[name].read_bytes()
    await assert_rejected(api, js, data[: min(len(data) // 3, 3000)], 415, {"not_audio"})


@pytest.mark.parametrize("name", ["short.wav", "short.flac"])
async def test_zero_samples(api, js, good, name) -> None:
    """A valid header followed by no audio data at all."""
    data = good[name].read_bytes()
    bodies = {
        "short.wav": data[:40] + struct.pack("<I", 0),  # a data chunk that honestly holds nothing
        "short.flac": data[: data.find(b"\xff\xf8", 42)],  # STREAMINFO and metadata, no frame
    }
    body = bodies[name]
    await assert_rejected(api, js, body, 422, {"no_samples", "truncated"})


async def test_wav_that_lies_about_its_codec(api, js, good) -> None:
    """PCM samples under a header whose format tag says MP3 (0x0055)."""
    data = bytearray(good["short.wav"].read_bytes())
    data[20:22] = struct.pack("<H", 0x0055)
    await assert_rejected(api, js, bytes(data), 415, {"codec_mismatch"})


@pytest.mark.parametrize("name", ["short.m4a", "short.flac"])
async def test_container_whose_packets_are_not_its_codec(api, js, good, name) -> None:
    """The container's index names the codec, but the packets are noise."""
    data = bytearray(good[name].read_bytes())
    if name.endswith(".m4a"):  # the payload of the mdat box, leaving the index (moov) intact
        box = data.find(b"mdat") - 4
        start, end = box + 8, box + struct.unpack(">I", data[box : box + 4])[0]
    else:  # every FLAC frame after the metadata blocks
        start, end = data.find(b"\xff\xf8", 42), len(data)
    noise = random.Random(14)
    data[start:end] = bytes(noise.randrange(256) for _ in range(end - start))
    expected = (415, {"codec_mismatch"}) if name.endswith(".m4a") else (422, {"no_samples"})
    await assert_rejected(api, js, bytes(data), *expected)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "m4a"])
async def test_longer_than_the_limit(api, js, good, fmt) -> None:
    detail = await assert_rejected(api, js, good[f"long.{fmt}"].read_bytes(), 422, {"too_long"})
    assert "KUBESCRIBE_INGEST_MAX_DURATION_S" in detail
