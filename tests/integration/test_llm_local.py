"""The real local model (llama.cpp via xllamacpp) summarizes a known transcript over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.documents import Segment, Transcript
from services.common.settings import LlmSettings
from services.runtime.llm_local import LocalLlmServer, llm_available
from services.runtime.models import MODEL_SHA256, ensure_model, sha256_of
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
