"""Prompts: a fixed prefix (system prompt, instructions), the transcript last.

Every request of every recording starts with the same system message and instruction text,
byte for byte, so a vLLM replica's automatic prefix cache (and GAIE's prefix-aware endpoint
picker) reuses their KV blocks: only the transcript is new prefill work, which is what time to
first token pays for. A transcript that does not fit the model's context is cut on segment
boundaries (never mid-sentence) into parts that each fit; each part is summarized (map) and
the partial summaries are merged (reduce), recursively if even they do not fit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.documents import Segment, Transcript
from services.common.settings import LlmSettings
from services.summarizer.settings import PromptSettings

Message = dict[str, str]
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PromptBuilder:
    """Builds chat messages within the context budget of ``llm``."""

    llm: LlmSettings
    prompts: PromptSettings

    def estimate_tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.prompts.chars_per_token)

    @property
    def input_budget(self) -> int:
        """Tokens left for the transcript part of one request (the largest of the instruction variants)."""
        fixed = max(
            self.estimate_tokens(self.prompts.instructions),
            self.estimate_tokens(self.prompts.map_instructions),
            self.estimate_tokens(self.prompts.reduce_instructions),
            self.estimate_tokens(self.prompts.repair_instructions),
        )
        budget = (
            self.llm.max_context_tokens
            - self.llm.max_tokens
            - self.prompts.prompt_overhead_tokens
            - self.estimate_tokens(self.prompts.system)
            - fixed
        )
        if budget < 64:
            raise ValueError(
                f"KUBESCRIBE_LLM_MAX_CONTEXT_TOKENS={self.llm.max_context_tokens} leaves {budget} tokens for the "
                f"transcript after the prompts and KUBESCRIBE_LLM_MAX_TOKENS={self.llm.max_tokens}; raise the "
                "context or shorten the prompts"
            )
        return budget

    def _messages(self, instructions: str, body: str, language: str | None) -> list[Message]:
        text = instructions.replace("{language}", language or "unknown")
        return [
            {"role": "system", "content": self.prompts.system},
            {"role": "user", "content": f"{text}\n\nTranscript:\n{body}"},
        ]

    def summary_messages(self, body: str, language: str | None = None) -> list[Message]:
        """The one-shot prompt: fixed prefix, transcript last."""
        return self._messages(self.prompts.instructions, body, language)

    def map_messages(self, part: str, language: str | None = None) -> list[Message]:
        return self._messages(self.prompts.map_instructions, part, language)

    def reduce_messages(self, partials: Sequence[str], language: str | None = None) -> list[Message]:
        body = "\n\n".join(f"Part {i}:\n{p.strip()}" for i, p in enumerate(partials, 1))
        return self._messages(self.prompts.reduce_instructions, body, language)

    def repair_messages(self, broken: str, error: str, language: str | None = None) -> list[Message]:
        """Ask again for a JSON answer that did not validate: fixed instructions first, the broken answer last."""
        return [
            {"role": "system", "content": self.prompts.system},
            {
                "role": "user",
                "content": f"{self.prompts.repair_instructions}\n\nProblem: {error}\n\nAnswer:\n{broken}",
            },
        ]

    def fits(self, text: str) -> bool:
        return self.estimate_tokens(text) <= self.input_budget

    def chunk(self, pieces: Sequence[str]) -> list[str]:
        """Greedily pack consecutive pieces (segments, sentences or partial summaries) into parts that fit.

        A single piece larger than the budget is split on sentence ends, then on words.
        """
        budget = self.input_budget
        parts: list[str] = []
        current: list[str] = []
        size = 0
        for piece in _split_oversized(pieces, budget, self):
            cost = self.estimate_tokens(piece) + 1
            if current and size + cost > budget:
                parts.append(" ".join(current))
                current, size = [], 0
            current.append(piece)
            size += cost
        if current:
            parts.append(" ".join(current))
        return parts


def _split_oversized(pieces: Sequence[str], budget: int, builder: PromptBuilder) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if builder.estimate_tokens(piece) < budget:
            out.append(piece)
            continue
        for sentence in _SENTENCE_RE.split(piece):
            if builder.estimate_tokens(sentence) < budget:
                out.append(sentence)
                continue
            words, current = sentence.split(), []
            for word in words:
                if current and builder.estimate_tokens(" ".join([*current, word])) >= budget:
                    out.append(" ".join(current))
                    current = []
                current.append(word)
            if current:
                out.append(" ".join(current))
    return out


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each ``.``, ``!`` or ``?`` that ends a sentence (whitespace folded)."""
    return [s for s in _SENTENCE_RE.split(" ".join(text.split())) if s.strip()]


def transcript_pieces(transcript: Transcript) -> list[str]:
    """The units a transcript may be cut between: its segments, or its sentences when it has none."""
    if transcript.segments:
        return [segment.text for segment in transcript.segments]
    return split_sentences(transcript.text)


def transcript_from_text(text: str, recording_id: str = "local") -> Transcript:
    """A plain-text transcript (``kubescribe summarize notes.txt``) as a document with one segment per line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    segments = [Segment(start=float(i), end=float(i + 1), text=line) for i, line in enumerate(lines)]
    return Transcript(
        recording_id=recording_id,
        text=" ".join(lines),
        segments=segments,
        model="text",
        audio_s=0.0,
        processing_s=0.0,
        job_id="local",
    )
