"""Ingest while its nats-server is away (SIGKILLed, then restarted on the same port and store).

Every ``/v1`` route answers 503 with ``Retry-After`` and the reason, ``/readyz`` says why, the
process does not exit or print a traceback, and once NATS is back the same client retrying the
same upload with its Idempotency-Key gets one recording, as a client of a restarted stack would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from nats.js.errors import KeyNotFoundError

from services.common.status import StatusStore
from services.common.topology import IDEMPOTENCY_BUCKET, ensure_topology
from services.ingest import idempotency
from services.ingest.client import upload_with_retry
from services.ingest.idempotency import IdempotencyClaims, claim_key
from services.runtime.demo import bundled_samples
from services.runtime.nats_server import EmbeddedNatsServer, NatsAuth
from services.runtime.processes import wait_until
from tests.integration.ingest_support import ingest_subprocess

pytestmark = pytest.mark.nats


async def test_every_route_answers_503_with_retry_after_until_nats_is_back(tmp_path: Path) -> None:
    auth = NatsAuth.load_or_create(tmp_path / "secrets")
    server = EmbeddedNatsServer(tmp_path / "store", auth=auth)
    server.start()
    sample = bundled_samples()[0].path
    try:
        with ingest_subprocess(server.url, tmp_path, **auth.env()) as (process, base):
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                first = await upload_with_retry(client, sample, idempotency_key="outage-1")
                assert server.process is not None and server.pid is not None
                os.kill(server.pid, signal.SIGKILL)
                wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 503, "ingest to notice", 10)

                ready = (await client.get("/readyz")).json()
                assert ready["status"] == "unavailable" and "NATS" in ready["problems"][0]
                assert (await client.get("/healthz")).status_code == 200  # alive: no restart needed
                answers = [
                    await client.get(f"/v1/recordings/{first['id']}"),
                    await client.get(f"/v1/recordings/{first['id']}/transcript"),
                    await client.post(
                        "/v1/recordings", content=sample.read_bytes(), headers={"Content-Type": "audio/wav"}
                    ),
                ]
                for response in answers:
                    assert response.status_code == 503, response.text
                    assert response.headers["Retry-After"].isdigit()
                    assert response.json()["error"] == "unavailable" and "NATS" in response.json()["detail"]

                server.process.start()  # what the stack's supervisor does: same port, same store
                server.wait_ready()
                again = await upload_with_retry(client, sample, idempotency_key="outage-1")
                second = await upload_with_retry(client, sample, idempotency_key="outage-2")
                assert again["id"] == first["id"] and second["id"] != first["id"]
                assert (await client.get(f"/v1/recordings/{second['id']}")).status_code == 200
            assert process.poll() is None, "ingest must ride through the outage"
        log = next(tmp_path.glob("ingest-*.log")).read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        server.stop()


async def test_a_live_upload_keeps_its_idempotency_claim_fresh(js, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim is stale 30 s after its last renewal, so only an upload that died loses it."""
    monkeypatch.setattr(idempotency, "CLAIM_RENEW_S", 0.1)
    await ensure_topology(js)
    claims = IdempotencyClaims(await js.key_value(IDEMPOTENCY_BUCKET), await StatusStore.open(js))
    key = claim_key("default", f"lease-{time.time_ns()}")
    owner, revision = await claims.claim(key, "01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert revision is not None
    first = json.loads((await claims.kv.get(key)).value)["at"]
    lease = claims.keep_fresh(key, owner, revision)
    await asyncio.sleep(0.45)
    current = await lease.stop()
    entry = await claims.kv.get(key)
    assert current > revision and entry.revision == current
    assert json.loads(entry.value)["at"] > first and json.loads(entry.value)["id"] == owner
    await claims.release(key, current)  # the revision release needs is the renewed one
    with pytest.raises(KeyNotFoundError):
        await claims.kv.get(key)
