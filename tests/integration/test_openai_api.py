"""The OpenAI-compatible transcription API, driven by the official ``openai`` SDK against the real
pipeline: ingest in-process, a real nats-server, the dispatcher with the local backend running
faster-whisper tiny.en subprocesses on espeak-ng speech."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from services.common.settings import ApiSettings, IngestSettings, NatsSettings, OpenAISettings, Settings
from services.dispatcher.backends.local import LocalJobBackend
from services.runtime.nats_server import free_port
from tests.integration._dispatch import delete_consumer, make_settings, running_dispatcher, unique_durable, wer
from tests.integration.ingest_support import running_ingest, store_counts
from tests.speech import synthesize

pytestmark = [pytest.mark.nats, pytest.mark.slow]

SPOKEN = "Please send the updated design document to the whole team before Friday."
TOKEN = "sk-test-token"


def pipeline_settings(nats: NatsSettings, *, wait_s: float = 120.0) -> Settings:
    settings = make_settings(nats, slots=1)
    settings.ingest = IngestSettings(port=free_port(), max_in_flight=1_000_000)  # type: ignore[misc]
    settings.api = ApiSettings(api_token=TOKEN)  # type: ignore[misc]
    settings.openai = OpenAISettings(wait_s=wait_s)  # type: ignore[misc]
    return settings


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(SPOKEN, tmp_path_factory.mktemp("openai") / "design.wav")


@contextlib.asynccontextmanager
async def pipeline(nc, settings: Settings, tmp_path: Path, *, dispatcher: bool = True) -> AsyncIterator[str]:
    durable = unique_durable()
    backend = LocalJobBackend(settings, env={"KUBESCRIBE_TELEMETRY_SPAN_FILE": str(tmp_path / "spans.jsonl")})
    async with contextlib.AsyncExitStack() as stack:
        if dispatcher:
            await stack.enter_async_context(running_dispatcher(settings, backend, durable))
        url = await stack.enter_async_context(running_ingest(settings, nc))
        try:
            yield url
        finally:
            if dispatcher:
                await delete_consumer(nc.jetstream(), durable)


@pytest_asyncio.fixture(loop_scope="session")
async def client(nc, nats_settings, tmp_path) -> AsyncIterator[openai.AsyncOpenAI]:
    async with pipeline(nc, pipeline_settings(nats_settings), tmp_path) as url:
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=180)
        try:
            yield sdk
        finally:
            await sdk.close()


async def test_every_response_format_through_the_sdk(client: openai.AsyncOpenAI, clip: Path) -> None:
    models = await client.models.list()
    assert {m.id for m in models.data} >= {"whisper-1", "tiny.en"}

    # Five recordings at once: each runs the normal pipeline (packed together by the dispatcher).
    def request(response_format: str, **extra):
        return client.audio.transcriptions.create(
            model="whisper-1", file=clip, response_format=response_format, **extra
        )

    as_json, as_text, as_srt, as_vtt, verbose = await asyncio.gather(
        request("json"),
        request("text"),
        request("srt"),
        request("vtt"),
        request("verbose_json", timestamp_granularities=["word", "segment"], temperature=0.0, prompt="design"),
    )
    assert wer([SPOKEN], [as_json.text]) < 0.3, as_json.text
    assert isinstance(as_text, str) and wer([SPOKEN], [as_text]) < 0.3, as_text
    assert re.match(r"1\n00:00:0\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", as_srt), as_srt
    assert as_vtt.startswith("WEBVTT") and " --> " in as_vtt, as_vtt
    assert wer([SPOKEN], [verbose.text]) < 0.3
    assert verbose.duration == pytest.approx(4.5, abs=2.5)
    assert verbose.segments and verbose.segments[0].start >= 0 and verbose.segments[-1].end <= verbose.duration + 0.5
    words = verbose.words or []
    assert len(words) >= len(SPOKEN.split()) - 3, words
    assert all(w.start <= w.end for w in words) and all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert wer([SPOKEN], [" ".join(w.word for w in words)]) < 0.3


async def test_bad_input_gets_openai_shaped_errors(client: openai.AsyncOpenAI, tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are not the bytes of any audio container " * 40)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=bad)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == "file" and error["type"] == "invalid_request_error"
    assert "not a readable audio container" in error["message"], error

    wav = synthesize("one two three", tmp_path / "short.wav")
    with pytest.raises(openai.BadRequestError, match="not served here") as caught:
        await client.audio.transcriptions.create(model="large-v9", file=wav)
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="response_format") as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=wav, response_format="pdf")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="verbose_json"):
        await client.audio.transcriptions.create(model="whisper-1", file=wav, timestamp_granularities=["word"])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await client.audio.transcriptions.create(model="whisper-1", file=wav, temperature=7)

    wrong = openai.AsyncOpenAI(base_url=str(client.base_url), api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.models.list()
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    await wrong.close()


async def test_a_slow_transcript_is_a_504_with_the_recording_id(nc, js, nats_settings, tmp_path, clip) -> None:
    """No dispatcher runs, so the transcript never comes: the bounded wait ends in a 504 naming the
    recording, whose status the client can then poll."""
    settings = pipeline_settings(nats_settings, wait_s=1.0)
    before = await store_counts(js)
    async with pipeline(nc, settings, tmp_path, dispatcher=False) as url:
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=2)
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.audio.transcriptions.create(model="whisper-1", file=clip)
        await sdk.close()
        assert caught.value.status_code == 504
        body = caught.value.body
        assert body["code"] == "transcription_timeout" and body["type"] == "timeout"
        recording_id = body["recording_id"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            status = (await http.get(body["status_url"])).json()
        assert status["id"] == recording_id and status["stage"] == "received"
    # x-should-retry: false kept the SDK (max_retries=2) from uploading the recording again.
    _, events = await store_counts(js)
    assert events - before[1] == 1
