"""Structured summaries from the real local model (llama.cpp via xllamacpp): constrained JSON, repair."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest

from services.common.settings import LlmSettings
from services.runtime.llm_local import LocalLlmServer, llm_available
from services.runtime.models import ensure_model
from services.summarizer.client import ChatClient, RetryPolicy
from services.summarizer.prompts import PromptBuilder, transcript_from_text
from services.summarizer.render import render_markdown
from services.summarizer.settings import PromptSettings
from services.summarizer.structured import parse_content, response_format, response_schema, summarize_structured

pytestmark = [
    pytest.mark.llm,
    pytest.mark.slow,
    pytest.mark.skipif(not llm_available(), reason="the llm extra is missing: pip install 'kubescribe[llm]'"),
]

MEETING = (
    "Good morning everyone, let's start the quarterly planning meeting.\n"
    "We have 40,000 dollars left for the marketing campaign.\n"
    "We agreed to hire two new engineers before March.\n"
    "Tom will write the job descriptions by Friday.\n"
)


@pytest.fixture(scope="module")
def local_llm() -> Iterator[LocalLlmServer]:
    with LocalLlmServer(ensure_model(), threads=2, n_ctx=4096, parallel=1) as server:
        yield server


def _setup(server: LocalLlmServer) -> tuple[LlmSettings, PromptBuilder]:
    llm = LlmSettings(base_url=server.base_url, model="local", temperature=0.0)
    return llm, PromptBuilder(llm, PromptSettings())


async def test_the_model_answers_a_valid_summary_object(local_llm: LocalLlmServer) -> None:
    llm, builder = _setup(local_llm)
    async with ChatClient(llm, retry=RetryPolicy(deadline_s=300)) as client:
        result = await summarize_structured(client, builder, transcript_from_text(MEETING, "meeting"))
    assert result.content is not None, result.outcome.text  # the server enforced the schema
    raw = result.outcome.results[-1].text
    jsonschema.validate(json.loads(raw), response_schema())
    assert result.content.title and 1 <= len(result.content.key_points) <= 5
    assert result.outcome.text == render_markdown(result.content)


async def test_a_cut_off_answer_is_repaired_by_the_model(local_llm: LocalLlmServer) -> None:
    llm, builder = _setup(local_llm)
    broken = '{"title": "Quarterly planning", "key_points": ["40,000 dollars left for marketing", "Hire two engi'
    async with ChatClient(llm, retry=RetryPolicy(deadline_s=300)) as client:
        repaired = await client.chat(
            builder.repair_messages(broken, "the answer is not valid JSON"), response_format=response_format()
        )
    content = parse_content(repaired.text)
    assert content.title and content.key_points


async def test_a_long_recording_reaches_the_model_as_its_informative_sentences(local_llm: LocalLlmServer) -> None:
    """Small talk around the facts: the focused prompt is a fraction of the whole one, and the
    answer is still a valid summary (its length budget follows the whole transcript)."""
    chatter = "Can you all hear me? Yeah, sorry, I was on mute. Okay, great, thanks everyone. " * 12
    long_meeting = chatter + MEETING.replace("\n", " ") + chatter
    llm = LlmSettings(base_url=local_llm.base_url, model="local", temperature=0.0)
    outcomes = {}
    async with ChatClient(llm, retry=RetryPolicy(deadline_s=300)) as client:
        for words in (0, 60):
            builder = PromptBuilder(llm, PromptSettings(focus_words=words))
            outcomes[words] = await summarize_structured(client, builder, transcript_from_text(long_meeting, "long"))
    assert outcomes[60].outcome.tokens_in < 0.6 * outcomes[0].outcome.tokens_in
    assert outcomes[60].content is not None and outcomes[60].content.key_points
