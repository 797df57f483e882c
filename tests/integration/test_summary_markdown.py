"""``GET /v1/recordings/{id}/summary?format=md`` on the real ingest API (real nats-server, uvicorn, HTTP)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from services.common.documents import ActionItem, Summary
from services.common.status import RecordingStage, StatusStore
from services.common.storage import put_bytes
from tests.integration.ingest_support import make_settings, running_ingest
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.nats


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(SENTENCES[0], tmp_path_factory.mktemp("summary-md") / "clip.wav")


@pytest_asyncio.fixture(loop_scope="session")
async def api(nc, nats_settings):
    async with running_ingest(make_settings(nats_settings), nc) as base, httpx.AsyncClient(base_url=base) as client:
        yield client


async def _summarized(api: httpx.AsyncClient, js, clip: Path, summary: Summary) -> str:
    response = await api.post("/v1/recordings", content=clip.read_bytes(), headers={"Content-Type": "audio/wav"})
    recording_id = response.json()["id"]
    ref = await put_bytes(
        js,
        "summaries",
        recording_id,
        summary.model_copy(update={"recording_id": recording_id}).model_dump_json().encode(),
    )
    await (await StatusStore.open(js)).advance(recording_id, RecordingStage.summarized, summary=ref)
    return recording_id


def _summary(**fields) -> Summary:
    return Summary(recording_id="r", model="m", ttft_s=0.1, generation_s=0.2, tokens_in=5, tokens_out=3, **fields)


async def test_structured_summary_as_markdown_and_json(api, js, clip) -> None:
    summary = _summary(
        text="ignored by the md rendering",
        title="Budget review",
        key_points=["Revenue up 8 percent"],
        decisions=["Hire two engineers"],
        action_items=[ActionItem(task="Post the job ads", owner="Maria", due="Friday")],
    )
    recording_id = await _summarized(api, js, clip, summary)
    md = await api.get(f"/v1/recordings/{recording_id}/summary", params={"format": "md"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text == (
        "# Budget review\n\n## Key points\n\n- Revenue up 8 percent\n\n## Decisions\n\n- Hire two engineers\n\n"
        "## Action items\n\n- [ ] Post the job ads (**Maria**, due Friday)\n"
    )
    body = (await api.get(f"/v1/recordings/{recording_id}/summary")).json()
    assert body["title"] == "Budget review" and body["action_items"][0]["owner"] == "Maria"
    assert (await api.get(f"/v1/recordings/{recording_id}/summary", params={"format": "json"})).json() == body


async def test_prose_summary_as_markdown_and_a_bad_format(api, js, clip) -> None:
    recording_id = await _summarized(api, js, clip, _summary(text="- A greeting."))
    md = await api.get(f"/v1/recordings/{recording_id}/summary", params={"format": "md"})
    assert md.text == "# Summary\n\n- A greeting.\n"
    body = (await api.get(f"/v1/recordings/{recording_id}/summary")).json()
    assert body["text"] == "- A greeting." and body["title"] is None
    bad = await api.get(f"/v1/recordings/{recording_id}/summary", params={"format": "pdf"})
    assert bad.status_code == 422


async def test_markdown_of_a_summary_not_ready_is_409(api, clip) -> None:
    response = await api.post("/v1/recordings", content=clip.read_bytes(), headers={"Content-Type": "audio/wav"})
    got = await api.get(f"/v1/recordings/{response.json()['id']}/summary", params={"format": "md"})
    assert got.status_code == 409 and got.json()["stage"] == "received"
