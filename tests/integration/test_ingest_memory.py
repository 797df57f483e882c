"""A 200 MiB upload to a real ingest process grows its RSS by less than 64 MiB (the body streams)."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import pytest

from services.common.events import ObjectRef
from services.common.storage import delete_object, object_exists
from services.common.topology import AUDIO_BUCKET
from tests.integration.ingest_support import ingest_subprocess

pytestmark = [pytest.mark.nats, pytest.mark.slow]

UPLOAD_BYTES = 200 << 20
RSS_BUDGET = 64 << 20


def wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    """A 16-bit mono PCM WAV header announcing ``data_bytes`` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def read_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) * 1024
    return values


def generate(total: int, piece: int = 1 << 20):
    header = wav_header(total - 44)
    yield header
    zeros = b"\0" * piece
    sent = len(header)
    while sent < total:
        n = min(piece, total - sent)
        yield zeros[:n]
        sent += n


@pytest.fixture
def ingest_process(nats_server, tmp_path):
    with ingest_subprocess(nats_server.url, tmp_path) as running:
        yield running


async def test_200_mib_upload_keeps_rss_flat(ingest_process, js) -> None:
    process, base = ingest_process
    with httpx.Client(base_url=base, timeout=120) as client:
        warm = client.post("/v1/recordings", content=b"".join(generate(1 << 20)), headers={"Content-Type": "audio/wav"})
        assert warm.status_code == 202, warm.text
        baseline = read_status(process.pid)["VmRSS"]
        response = client.post(
            "/v1/recordings",
            content=generate(UPLOAD_BYTES),
            headers={"Content-Type": "audio/wav", "Content-Length": str(UPLOAD_BYTES)},
        )
    assert response.status_code == 202, response.text
    body = response.json()
    peak = read_status(process.pid)["VmHWM"]
    growth = peak - baseline
    print(f"RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, growth {growth / 2**20:.1f} MiB")
    assert body["size"] == UPLOAD_BYTES
    assert body["duration_s"] == pytest.approx((UPLOAD_BYTES - 44) / 32000, abs=0.01)
    assert growth < RSS_BUDGET
    ref = ObjectRef(bucket=AUDIO_BUCKET, name=body["id"])
    assert await object_exists(js, ref)
    await delete_object(js, ref)  # give the disk back
    await delete_object(js, ObjectRef(bucket=AUDIO_BUCKET, name=warm.json()["id"]))
