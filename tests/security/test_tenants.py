"""Tenants isolated by their keys, and deletion that leaves no trace, against real NATS and uvicorn.

Keys are made the way ``kubescribe keys create`` makes them, into a keys file the running
server reads; every request goes over HTTP.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.js.errors import NotFoundError

from services.common.documents import Summary, Transcript
from services.common.events import RecordingDeleted, parse_event
from services.common.settings import ApiSettings
from services.common.status import RecordingStage, StatusStore
from services.common.storage import put_bytes
from services.common.topology import (
    AUDIO_BUCKET,
    DELETIONS_STREAM,
    IDEMPOTENCY_BUCKET,
    RECORDING_DELETED,
    STATUS_BUCKET,
    SUMMARIES_BUCKET,
    TRANSCRIPTS_BUCKET,
)
from services.ingest.idempotency import claim_key
from services.ingest.keys import create_key, read_keys
from tests.integration.ingest_support import make_settings, running_ingest
from tests.kv import kv_keys
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.nats

IN_FLIGHT_LIMIT = 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return synthesize(SENTENCES[1], tmp_path_factory.mktemp("tenants") / "clip.wav").read_bytes()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "api-keys.json"
    made = {name: create_key(path, tenant=name)[1] for name in ("acme", "globex")}
    made["admin"] = create_key(path, tenant=None, admin=True)[1]
    made["path"] = str(path)
    return made


@pytest_asyncio.fixture(loop_scope="session")
async def base(nc, nats_settings, keys):
    settings = make_settings(nats_settings, tenant_max_in_flight={"limited": IN_FLIGHT_LIMIT})
    settings.api = ApiSettings(api_keys_file=Path(keys["path"]))  # type: ignore[misc]
    async with running_ingest(settings, nc) as url:
        yield url


def client(base: str, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=30)


async def upload(http: httpx.AsyncClient, clip: bytes, **headers: str) -> httpx.Response:
    return await http.post("/v1/recordings", content=clip, headers={"Content-Type": "audio/wav", **headers})


def test_keys_are_stored_hashed(keys) -> None:
    stored = Path(keys["path"]).read_text()
    assert keys["acme"] not in stored and keys["acme"].split("_")[2] not in stored
    assert {k.tenant for k in read_keys(Path(keys["path"]))} == {"acme", "globex", None}
    assert Path(keys["path"]).stat().st_mode & 0o077 == 0


async def test_missing_or_wrong_key_is_401(base, keys, clip) -> None:
    for key in (None, "ks_00000000_wrong", keys["acme"][:-1], f"{keys['acme']}x"):
        async with client(base, key) as http:
            response = await upload(http, clip)
            assert response.status_code == 401, response.text
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await http.get("/v1/recordings/01JDZ8W3V0R4N8M0Q2K5T7Y9AB")).status_code == 401
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/v1/recordings", headers={"Authorization": f"Basic {keys['acme']}"})).status_code in (
            401,
            405,
        )


async def test_tenant_comes_from_the_key_not_the_header(base, keys, clip, js) -> None:
    async with client(base, keys["acme"]) as http:
        own = await upload(http, clip)
        assert own.status_code == 202, own.text
        same = await upload(http, clip, **{"X-Tenant": "acme"})
        assert same.status_code == 202
        chosen = await upload(http, clip, **{"X-Tenant": "globex"})
        assert chosen.status_code == 403, chosen.text
        assert chosen.json()["error"] == "tenant_forbidden"
    store = await StatusStore.open(js)
    assert (await store.get(own.json()["id"])).tenant == "acme"
    async with client(base, keys["admin"]) as http:  # an admin key may act for a tenant
        acting = await upload(http, clip, **{"X-Tenant": "globex"})
        assert acting.status_code == 202
    assert (await store.get(acting.json()["id"])).tenant == "globex"


async def test_cross_tenant_reads_are_404(base, keys, clip) -> None:
    async with client(base, keys["acme"]) as acme, client(base, keys["globex"]) as globex:
        recording_id = (await upload(acme, clip)).json()["id"]
        assert (await acme.get(f"/v1/recordings/{recording_id}")).status_code == 200
        for path in ("", "/transcript", "/summary"):
            response = await globex.get(f"/v1/recordings/{recording_id}{path}")
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == f"no recording {recording_id}"  # same as for an unknown id
        assert (await globex.delete(f"/v1/recordings/{recording_id}")).status_code == 404
        assert (await acme.get(f"/v1/recordings/{recording_id}")).status_code == 200


async def test_over_the_in_flight_limit_is_429(base, keys, clip) -> None:
    async with client(base, keys["admin"]) as http:
        accepted = [await upload(http, clip, **{"X-Tenant": "limited"}) for _ in range(IN_FLIGHT_LIMIT)]
        assert [r.status_code for r in accepted] == [202] * IN_FLIGHT_LIMIT
        over = await upload(http, clip, **{"X-Tenant": "limited"})
        assert over.status_code == 429, over.text
        assert over.json()["error"] == "too_many_in_flight"
        assert int(over.headers["Retry-After"]) > 0
        assert (await upload(http, clip, **{"X-Tenant": "acme"})).status_code == 202  # others unaffected
        # A finished recording frees its slot.
        await http.delete(f"/v1/recordings/{accepted[0].json()['id']}")
        for _ in range(100):
            retry = await upload(http, clip, **{"X-Tenant": "limited"})
            if retry.status_code == 202:
                break
        assert retry.status_code == 202, retry.text


async def _subject_holds_nothing(js, stream: str, subject: str) -> bool:
    try:
        await js.get_last_msg(stream, subject)
    except NotFoundError:
        return True
    return False


async def test_deleted_recording_leaves_no_trace(base, keys, clip, js) -> None:
    async with client(base, keys["acme"]) as http:
        response = await upload(http, clip, **{"Idempotency-Key": "delete-me"})
        recording_id = response.json()["id"]
        # The later stages' documents, written as the transcriber and summarizer write them.
        transcript = Transcript(
            recording_id=recording_id, text="hi", segments=[], model="tiny.en", audio_s=1, processing_s=1, job_id="j"
        )
        summary = Summary(
            recording_id=recording_id, text="hi", model="m", ttft_s=0, generation_s=0, tokens_in=1, tokens_out=1
        )
        t_ref = await put_bytes(js, TRANSCRIPTS_BUCKET, recording_id, transcript.model_dump_json().encode())
        s_ref = await put_bytes(js, SUMMARIES_BUCKET, recording_id, summary.model_dump_json().encode())
        await (await StatusStore.open(js)).advance(
            recording_id, RecordingStage.summarized, transcript=t_ref, summary=s_ref
        )
        claims_before = await kv_keys(js, IDEMPOTENCY_BUCKET)
        assert f"rec.{recording_id}" in claims_before

        deleted = await http.delete(f"/v1/recordings/{recording_id}")
        assert deleted.status_code == 204, deleted.text
        assert (await http.delete(f"/v1/recordings/{recording_id}")).status_code == 204  # idempotent
        assert (await http.get(f"/v1/recordings/{recording_id}")).status_code == 404
        async with client(base, keys["globex"]) as other:
            assert (await other.delete(f"/v1/recordings/{recording_id}")).status_code == 404

    name = base64.urlsafe_b64encode(recording_id.encode()).decode()
    for bucket in (AUDIO_BUCKET, TRANSCRIPTS_BUCKET, SUMMARIES_BUCKET):
        assert await _subject_holds_nothing(js, f"OBJ_{bucket}", f"$O.{bucket}.M.{name}"), bucket
    for bucket in (AUDIO_BUCKET, TRANSCRIPTS_BUCKET, SUMMARIES_BUCKET):
        info = await js.stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.M.{name}")
        assert not info.state.subjects, bucket
    assert await _subject_holds_nothing(js, f"KV_{STATUS_BUCKET}", f"$KV.{STATUS_BUCKET}.{recording_id}")
    assert recording_id not in await kv_keys(js, STATUS_BUCKET)
    gone = claims_before - await kv_keys(js, IDEMPOTENCY_BUCKET)
    assert gone == {f"rec.{recording_id}", claim_key("acme", "delete-me")}
    for key in gone:
        assert await _subject_holds_nothing(js, f"KV_{IDEMPOTENCY_BUCKET}", f"$KV.{IDEMPOTENCY_BUCKET}.{key}")
    event = parse_event(RecordingDeleted, (await js.get_last_msg(DELETIONS_STREAM, RECORDING_DELETED)).data)
    assert (event.recording_id, event.tenant, event.reason) == (recording_id, "acme", "request")
    assert {f"{b}/{recording_id}" for b in (AUDIO_BUCKET, TRANSCRIPTS_BUCKET, SUMMARIES_BUCKET, STATUS_BUCKET)} <= set(
        event.removed
    )
