"""The ingest HTTP API against a real nats-server, served by uvicorn on 127.0.0.1 and called over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.documents import Segment, Summary, Transcript
from services.common.events import AudioReceived, ObjectRef, parse_event
from services.common.ids import new_id
from services.common.status import RecordingStage, StatusStore
from services.common.storage import get_bytes, object_exists, put_bytes
from services.common.telemetry import StageSpan, setup_telemetry
from services.common.topology import AUDIO_BUCKET, AUDIO_RECEIVED, AUDIO_STREAM, IDEMPOTENCY_BUCKET, ensure_topology
from services.ingest.idempotency import IDEMPOTENCY_STALE_S, claim_key
from tests.integration.ingest_support import make_settings, running_ingest, store_counts
from tests.speech import SENTENCES, duration_of, synthesize

pytestmark = pytest.mark.nats

FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}


@pytest.fixture(scope="session")
def spans(tmp_path_factory: pytest.TempPathFactory) -> InMemorySpanExporter:
    """Finished spans of this process, whoever installed the tracer provider."""
    provider = setup_telemetry("kubescribe-tests", span_file=tmp_path_factory.mktemp("spans") / "spans.jsonl")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("ingest-clips")
    return {fmt: synthesize(SENTENCES[0], directory / f"clip.{fmt}") for fmt in FORMATS}


@pytest_asyncio.fixture(loop_scope="session")
async def api(nc, nats_settings, spans):
    settings = make_settings(nats_settings, max_upload_bytes=1 << 20)
    async with running_ingest(settings, nc) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


async def last_event(js) -> AudioReceived:
    msg = await js.get_last_msg(AUDIO_STREAM, AUDIO_RECEIVED)
    return parse_event(AudioReceived, msg.data)


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_upload_is_accepted_with_its_duration(api, js, clips, spans, fmt) -> None:
    path = clips[fmt]
    response = await api.post(
        "/v1/recordings",
        content=path.read_bytes(),
        headers={"Content-Type": FORMATS[fmt], "X-Tenant": "acme", "X-Priority": "high", "X-Filename": path.name},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"].endswith(f"/v1/recordings/{body['id']}")
    assert body["duration_s"] == pytest.approx(duration_of(path), abs=0.05)

    event = await last_event(js)
    assert event.recording_id == body["id"]
    assert (event.tenant, event.priority.value, event.filename) == ("acme", "high", path.name)
    assert event.duration_s == body["duration_s"]
    assert event.audio.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert await get_bytes(js, event.audio) == path.read_bytes()  # readable by nats-py's own ObjectStore.get

    status = await (await StatusStore.open(js)).get(body["id"])
    assert status is not None and status.stage is RecordingStage.received
    assert status.audio == event.audio and status.traceparent

    span = next(s for s in spans.get_finished_spans() if s.attributes.get("kubescribe.recording_id") == body["id"])
    assert span.name == StageSpan.INGEST and span.parent is None
    assert status.traceparent.split("-")[1] == f"{span.context.trace_id:032x}"


async def test_multipart_upload(api, js, clips) -> None:
    path = clips["flac"]
    files = {"file": (path.name, path.read_bytes(), "audio/flac")}
    response = await api.post("/v1/recordings", files=files, data={"note": "ignored"})
    assert response.status_code == 202, response.text
    event = await last_event(js)
    assert event.recording_id == response.json()["id"]
    assert (event.filename, event.content_type) == (path.name, "audio/flac")
    assert await get_bytes(js, event.audio) == path.read_bytes()


async def test_status_transcript_and_summary(api, js, clips) -> None:
    response = await api.post(
        "/v1/recordings", content=clips["wav"].read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    recording_id = response.json()["id"]

    status = (await api.get(f"/v1/recordings/{recording_id}")).json()
    assert status["stage"] == "received" and "received" in status["timestamps"]
    assert "transcript" not in status["links"]
    not_ready = await api.get(f"/v1/recordings/{recording_id}/transcript")
    assert not_ready.status_code == 409 and not_ready.json()["stage"] == "received"
    assert (await api.get(f"/v1/recordings/{recording_id}/summary")).status_code == 409

    transcript = Transcript(
        recording_id=recording_id,
        text="Hello there. General Kenobi.",
        segments=[
            Segment(start=0, end=1.5, text=" Hello there."),
            Segment(start=1.5, end=3.25, text=" General Kenobi."),
        ],
        model="tiny.en",
        audio_s=3.25,
        processing_s=0.1,
        job_id="job-1",
    )
    summary = Summary(
        recording_id=recording_id,
        text="A greeting.",
        model="m",
        ttft_s=0.1,
        generation_s=0.2,
        tokens_in=5,
        tokens_out=3,
    )
    t_ref = await put_bytes(js, "transcripts", recording_id, transcript.model_dump_json().encode())
    s_ref = await put_bytes(js, "summaries", recording_id, summary.model_dump_json().encode())
    store = await StatusStore.open(js)
    await store.advance(recording_id, RecordingStage.summarized, transcript=t_ref, summary=s_ref, job_id="job-1")

    status = (await api.get(f"/v1/recordings/{recording_id}")).json()
    assert status["stage"] == "summarized" and status["job_id"] == "job-1"
    assert status["links"]["transcript"].endswith("/transcript")
    got = (await api.get(status["links"]["transcript"])).json()
    assert got["segments"][1] == {"start": 1.5, "end": 3.25, "text": " General Kenobi."}
    srt = (await api.get(f"/v1/recordings/{recording_id}/transcript", params={"format": "srt"})).text
    assert "2\n00:00:01,500 --> 00:00:03,250\nGeneral Kenobi." in srt
    vtt = await api.get(f"/v1/recordings/{recording_id}/transcript", params={"format": "vtt"})
    assert vtt.text.startswith("WEBVTT") and vtt.headers["content-type"].startswith("text/vtt")
    txt = (await api.get(f"/v1/recordings/{recording_id}/transcript", params={"format": "txt"})).text
    assert txt == "Hello there.\nGeneral Kenobi.\n"
    bad_format = await api.get(f"/v1/recordings/{recording_id}/transcript", params={"format": "pdf"})
    assert bad_format.status_code == 422
    assert (await api.get(f"/v1/recordings/{recording_id}/summary")).json()["text"] == "A greeting."


async def test_unknown_and_malformed_ids(api) -> None:
    unknown = await api.get(f"/v1/recordings/{new_id()}")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    malformed = await api.get("/v1/recordings/not-an-id")
    assert malformed.status_code == 404 and "ULID" in malformed.json()["detail"]
    assert (await api.get("/v1/recordings/not-an-id/transcript")).status_code == 404


def _chunked(data: bytes, size: int = 64 << 10):
    async def body():
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return body()


BAD_INPUTS = {
    "empty body": (b"", {"Content-Type": "audio/wav"}, 400, "empty"),
    "not audio content type": (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    "text pretending to be audio": (b"hello world\n" * 100, {"Content-Type": "audio/wav"}, 415, "not_audio"),
    "random bytes": (bytes(range(256)) * 64, {"Content-Type": "audio/mpeg"}, 415, "not_audio"),
    "over the limit": (b"\0" * ((1 << 20) + 1), {"Content-Type": "audio/wav"}, 413, "too_large"),
    "bad tenant": (b"RIFF", {"Content-Type": "audio/wav", "X-Tenant": "Not_A_Label"}, 422, "invalid_tenant"),
    "bad priority": (b"RIFF", {"Content-Type": "audio/wav", "X-Priority": "urgent"}, 422, "invalid_priority"),
    "multipart without file": (
        b"--b\r\nContent-Disposition: form-data; name=other\r\n\r\nx\r\n--b--\r\n",
        {"Content-Type": "multipart/form-data; boundary=b"},
        400,
        "bad_multipart",
    ),
    "truncated multipart": (
        b"--b\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n\r\nRIFFxxxx",
        {"Content-Type": "multipart/form-data; boundary=b"},
        400,
        "bad_multipart",
    ),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_is_rejected_and_leaves_nothing(api, js, case, chunked) -> None:
    data, headers, status, code = BAD_INPUTS[case]
    before = await store_counts(js)
    content = _chunked(data) if chunked else data
    response = await api.post("/v1/recordings", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["detail"]
    assert await store_counts(js) == before


async def test_garbage_after_a_valid_header_is_not_audio(api, js, clips) -> None:
    """A WAV header followed by a text file: the probe reads the header, so this is audio (of noise);
    but a FLAC magic with nothing valid after it is not."""
    before = await store_counts(js)
    response = await api.post("/v1/recordings", content=b"fLaC" + b"x" * 5000, headers={"Content-Type": "audio/flac"})
    assert response.status_code == 415, response.text
    assert await store_counts(js) == before


async def test_idempotent_retries_store_once(api, js, clips) -> None:
    data = clips["ogg"].read_bytes()
    headers = {"Content-Type": "audio/ogg", "Idempotency-Key": f"retry-{new_id()}", "X-Tenant": "t1"}
    before = await store_counts(js)
    first = await api.post("/v1/recordings", content=data, headers=headers)
    after_first = await store_counts(js)
    second = await api.post("/v1/recordings", content=data, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["replayed"] is True and second.headers["Idempotent-Replayed"] == "true"
    assert await store_counts(js) == after_first
    assert after_first[1] == before[1] + 1

    other_tenant = await api.post("/v1/recordings", content=data, headers={**headers, "X-Tenant": "t2"})
    assert other_tenant.status_code == 202 and other_tenant.json()["id"] != first.json()["id"]


async def test_uploads_leave_no_subscription_behind(api, nc, clips) -> None:
    """A JetStreamContext per upload once left one reply-inbox subscription per upload (1,500 on
    the connection after 1,500 uploads): the count must not grow with the uploads."""
    data = clips["wav"].read_bytes()
    await api.post("/v1/recordings", content=data, headers={"Content-Type": "audio/wav"})  # first use subscribes
    before = len(nc._subs)  # nats-py's table of this connection's subscriptions
    for _ in range(10):
        response = await api.post("/v1/recordings", content=data, headers={"Content-Type": "audio/wav"})
        assert response.status_code == 202, response.text
    assert len(nc._subs) == before


async def test_failed_request_releases_its_idempotency_key(api, clips) -> None:
    headers = {"Content-Type": "audio/wav", "Idempotency-Key": f"k-{new_id()}"}
    assert (await api.post("/v1/recordings", content=b"not audio", headers=headers)).status_code == 415
    retry = await api.post("/v1/recordings", content=clips["wav"].read_bytes(), headers=headers)
    assert retry.status_code == 202 and retry.json()["replayed"] is False


async def test_claimed_key_is_409_until_stale_then_taken_over(api, js, clips) -> None:
    """A claim whose owner has no status is an upload still streaming elsewhere: 409 naming its id,
    nothing stored. Once older than IDEMPOTENCY_STALE_S its owner is taken to have died, and the
    next upload takes the claim over (and is then what the key replays)."""
    kv = await js.key_value(IDEMPOTENCY_BUCKET)
    key, owner = f"claimed-{new_id()}", new_id()
    revision = await kv.create(claim_key("default", key), json.dumps({"id": owner, "at": time.time()}).encode())
    headers = {"Content-Type": "audio/wav", "Idempotency-Key": key}
    data = clips["wav"].read_bytes()
    before = await store_counts(js)
    busy = await api.post("/v1/recordings", content=data, headers=headers)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"] == "in_progress" and busy.json()["id"] == owner and busy.json()["detail"]
    assert await store_counts(js) == before
    assert 'kubescribe_ingest_rejections_total{reason="in_progress"} 1.0' in (await api.get("/metrics")).text

    stale = json.dumps({"id": owner, "at": time.time() - IDEMPOTENCY_STALE_S - 1}).encode()
    await kv.update(claim_key("default", key), stale, last=revision)
    taken = await api.post("/v1/recordings", content=data, headers=headers)
    assert taken.status_code == 202, taken.text
    assert taken.json()["replayed"] is False and taken.json()["id"] != owner
    replay = await api.post("/v1/recordings", content=data, headers=headers)
    assert replay.json()["id"] == taken.json()["id"] and replay.json()["replayed"] is True


async def test_publish_failure_rolls_back(api, js, clips) -> None:
    """With the AUDIO stream gone, publishing fails: 503, the object and the status are removed."""
    await js.delete_stream(AUDIO_STREAM)
    try:
        objects_before = (await js.stream_info(f"OBJ_{AUDIO_BUCKET}")).state.messages
        response = await api.post(
            "/v1/recordings", content=clips["wav"].read_bytes(), headers={"Content-Type": "audio/wav"}
        )
        assert response.status_code == 503 and response.json()["error"] == "unavailable"
        assert (await js.stream_info(f"OBJ_{AUDIO_BUCKET}")).state.messages == objects_before
        readyz = await api.get("/readyz")
        assert readyz.status_code == 503
    finally:
        await ensure_topology(js)
    assert (await api.get("/readyz")).status_code == 200


async def test_health_metrics_and_openapi(api, clips) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready"}
    await api.post("/v1/recordings", content=clips["wav"].read_bytes(), headers={"Content-Type": "audio/wav"})
    await api.post("/v1/recordings", content=b"", headers={"Content-Type": "audio/wav"})
    metrics = (await api.get("/metrics")).text
    assert 'kubescribe_ingest_rejections_total{reason="empty"} 1.0' in metrics
    assert 'kubescribe_ingest_requests_total{method="POST",route="/v1/recordings",status="202"}' in metrics
    assert "kubescribe_ingest_request_duration_seconds_bucket" in metrics
    assert "kubescribe_ingest_received_bytes_total" in metrics
    schema = (await api.get("/openapi.json")).json()
    assert "/v1/recordings" in schema["paths"]


async def test_bearer_token(nc, nats_settings, clips) -> None:
    settings = make_settings(nats_settings, token="s3cret")
    async with running_ingest(settings, nc) as base, httpx.AsyncClient(base_url=base) as client:
        wav = clips["wav"].read_bytes()
        headers = {"Content-Type": "audio/wav"}
        missing = await client.post("/v1/recordings", content=wav, headers=headers)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await client.get(f"/v1/recordings/{new_id()}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.post("/v1/recordings", content=wav, headers={**headers, "Authorization": "Bearer s3cret"})
        assert ok.status_code == 202
        assert (await client.get("/healthz")).status_code == 200


async def test_object_ref_of_the_event_exists(api, js, clips) -> None:
    response = await api.post(
        "/v1/recordings", content=clips["mp3"].read_bytes(), headers={"Content-Type": "audio/mp3"}
    )
    ref = ObjectRef(bucket=AUDIO_BUCKET, name=response.json()["id"])
    assert await object_exists(js, ref)


async def test_client_disconnect_mid_upload_leaves_nothing(api, js, clips) -> None:
    """A client that dies half-way through the body: the chunks written so far are purged."""
    before = await store_counts(js)
    data = clips["wav"].read_bytes()
    host, port = api.base_url.host, api.base_url.port
    _, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /v1/recordings HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\n"
        f"Content-Length: {len(data) * 5}\r\n\r\n"  # promises more than it sends, under the 1 MiB limit
    )
    writer.write(head.encode() + data * 3)
    await writer.drain()
    for _ in range(100):  # the server streams chunks into the store as they arrive
        if (await store_counts(js))[0] > before[0]:
            break
        await asyncio.sleep(0.02)
    assert (await store_counts(js))[0] > before[0], "no chunk was written before the disconnect"
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if await store_counts(js) == before:
            break
        await asyncio.sleep(0.05)
    assert await store_counts(js) == before
