"""Prompt layout (fixed prefix, transcript last) and map-reduce chunking on segment boundaries."""

from __future__ import annotations

import pytest

from services.common.documents import Segment, Transcript
from services.common.settings import LlmSettings
from services.summarizer.prompts import PromptBuilder, transcript_from_text, transcript_pieces
from services.summarizer.settings import PromptSettings


def _transcript(texts: list[str]) -> Transcript:
    segments = [Segment(start=i, end=i + 1, text=t) for i, t in enumerate(texts)]
    return Transcript(
        recording_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AB",
        text=" ".join(texts),
        segments=segments,
        model="tiny.en",
        audio_s=len(texts),
        processing_s=0.1,
        job_id="job",
    )


def _builder(context: int = 4096, max_tokens: int = 256) -> PromptBuilder:
    return PromptBuilder(LlmSettings(max_context_tokens=context, max_tokens=max_tokens), PromptSettings())


def test_fixed_prefix_then_transcript_last() -> None:
    builder = _builder()
    a = builder.summary_messages("first transcript")
    b = builder.summary_messages("a completely different one")
    assert a[0] == b[0] and a[0]["role"] == "system"
    prefix_a = a[1]["content"].split("Transcript:")[0]
    assert prefix_a == b[1]["content"].split("Transcript:")[0]
    assert a[1]["content"].endswith("first transcript")


def test_short_transcript_fits() -> None:
    builder = _builder()
    assert builder.fits(_transcript(["hello there"] * 10).text)


def test_chunks_on_segment_boundaries_and_fit() -> None:
    builder = _builder(context=700, max_tokens=100)
    segments = [f"Segment number {i} talks about topic {i} in some detail." for i in range(200)]
    parts = builder.chunk(transcript_pieces(_transcript(segments)))
    assert len(parts) > 1
    assert all(builder.fits(part) for part in parts)
    rejoined = " ".join(parts)
    assert rejoined == " ".join(segments)  # nothing lost, nothing cut inside a segment
    for part in parts:
        assert part.startswith("Segment number") and part.endswith("detail.")


def test_oversized_segment_is_split_on_sentences() -> None:
    builder = _builder(context=700, max_tokens=100)
    huge = " ".join(f"Sentence {i} is here." for i in range(400))
    parts = builder.chunk([huge])
    assert len(parts) > 1 and all(builder.fits(p) for p in parts)
    assert " ".join(parts).split() == huge.split()


def test_context_too_small_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="KUBESCRIBE_LLM_MAX_CONTEXT_TOKENS"):
        _ = _builder(context=300, max_tokens=256).input_budget


def test_plain_text_transcript() -> None:
    transcript = transcript_from_text("line one\n\nline two\n")
    assert [s.text for s in transcript.segments] == ["line one", "line two"]


def test_reduce_messages_number_the_parts() -> None:
    messages = _builder().reduce_messages(["alpha", "beta"])
    assert "Part 1:\nalpha" in messages[1]["content"] and "Part 2:\nbeta" in messages[1]["content"]
