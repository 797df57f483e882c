"""Retention with a tiny maximum age: the sweeper deletes a tenant's old recordings, and only those."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import pytest_asyncio

from services.common.events import ObjectRef, RecordingDeleted, parse_event
from services.common.storage import object_exists
from services.common.topology import DELETIONS_STREAM, RECORDING_DELETED
from tests.integration.ingest_support import make_settings, running_ingest
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.nats

MAX_AGE_S = 1.0


@pytest_asyncio.fixture(loop_scope="session")
async def api(nc, nats_settings):
    # Only tenant "ephemeral" expires: the session's NATS holds other tests' recordings too.
    settings = make_settings(nats_settings, tenant_retention_s={"ephemeral": MAX_AGE_S}, retention_sweep_s=0.2)
    async with running_ingest(settings, nc) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


async def test_old_recordings_of_a_tenant_expire(api, js, tmp_path) -> None:
    clip = synthesize(SENTENCES[3], tmp_path / "clip.wav").read_bytes()
    headers = {"Content-Type": "audio/wav"}
    short = (await api.post("/v1/recordings", content=clip, headers={**headers, "X-Tenant": "ephemeral"})).json()
    kept = (await api.post("/v1/recordings", content=clip, headers={**headers, "X-Tenant": "keeper"})).json()
    status = await api.get(f"/v1/recordings/{short['id']}")
    assert status.status_code == 200
    audio = status.json()["audio"]

    for _ in range(100):  # ~1 s of age plus a sweep every 0.2 s
        if (await api.get(f"/v1/recordings/{short['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.1)
    assert (await api.get(f"/v1/recordings/{short['id']}")).status_code == 404
    assert not await object_exists(js, ObjectRef(**audio))
    event = parse_event(RecordingDeleted, (await js.get_last_msg(DELETIONS_STREAM, RECORDING_DELETED)).data)
    assert (event.recording_id, event.reason) == (short["id"], "retention")
    assert (await api.get(f"/v1/recordings/{kept['id']}")).status_code == 200
