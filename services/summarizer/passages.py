"""Per-passage summaries: the transcript cut into consecutive passages, one short point asked for each.

Why: asked for the whole summary at once, the 0.5B model writes two or three points and stops,
and which facts survive is luck (docs/summaries.md). Asked to restate one passage of a few
sentences in fewer words, the same model keeps its numbers and names, and the passages together
cover the whole transcript, so no part is skipped. Title, decisions and action items come from
one more request over the whole transcript ("the frame"), sent at the same time: the requests
run side by side in the server's parallel slots, so the summary takes about as long as one.

Every request is still JSON under a grammar (a ``point`` string whose ``maxLength`` is the
passage's share of the length budget), and every passage request starts with the same system
prompt and instructions, so the server's prefix cache serves them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from services.common.documents import SummaryContent, Transcript
from services.common.events import Priority
from services.summarizer.client import ChatClient, ChatResult
from services.summarizer.domain import SummaryOutcome
from services.summarizer.prompts import PromptBuilder

logger = logging.getLogger(__name__)

_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
MAX_PASSAGES = 5
"""One point per passage, and a summary has at most five key points."""
MIN_POINT_WORDS = 6
"""Below about six words a note cannot hold a fact and its number ("Revenue 412 million, up 8 %")."""


@dataclass(frozen=True)
class Passage:
    text: str
    words: int
    point_words: int
    """How many words its point may have: the passage's share of the summary's budget."""

    @property
    def point_chars(self) -> int:
        from services.summarizer.structured import CHARS_PER_WORD

        return int(self.point_words * CHARS_PER_WORD)


def passages(text: str, *, passage_words: int, budget: float) -> list[Passage]:
    """``text`` cut at sentence ends into at most :data:`MAX_PASSAGES` passages of similar length.

    A passage is about ``passage_words`` long, so a short transcript gets fewer points (a
    45-word note is one passage); each point may use ``budget`` of its passage's words.
    """
    sentences = [s.strip() for s in _SENTENCE_RE.split(text) if s.strip()]
    total = sum(len(s.split()) for s in sentences)
    if not sentences:
        return []
    count = max(1, min(MAX_PASSAGES, len(sentences), round(total / passage_words)))
    target = total / count
    groups: list[list[str]] = [[]]
    done = 0
    for sentence in sentences:
        size = len(sentence.split())
        # Close the passage when this sentence's middle lies past the passage's share.
        if groups[-1] and len(groups) < count and done + size / 2 > target * len(groups):
            groups.append([])
        groups[-1].append(sentence)
        done += size
    out = []
    for group in groups:
        joined = " ".join(group)
        words = len(joined.split())
        out.append(Passage(joined, words, max(MIN_POINT_WORDS, math.floor(budget * words))))
    return out


def point_format(chars: int) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"point": {"type": "string", "maxLength": chars}},
        "required": ["point"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "point", "strict": True, "schema": schema}}


def frame_format(caps: Any) -> dict[str, Any]:
    """The summary schema without key points: what the frame request writes."""
    from services.summarizer.structured import response_schema

    schema = response_schema(caps)
    del schema["properties"]["key_points"]
    schema["required"] = [k for k in schema["required"] if k != "key_points"]
    return {"type": "json_schema", "json_schema": {"name": "frame", "strict": True, "schema": schema}}


def parse_point(text: str) -> str:
    """The point of a passage's answer ('' when it holds none or is not the JSON asked for)."""
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1]).get("point", "") if 0 <= start < end else ""
    except (ValueError, AttributeError):
        value = ""
    return " ".join(str(value).split()).strip(" -")


@dataclass
class PassageAnswers:
    points: list[tuple[str, int]]
    """Each non-empty point with the ``maxLength`` the grammar held it to."""
    frame: ChatResult
    outcome: SummaryOutcome


async def summarize_passages(
    client: ChatClient,
    builder: PromptBuilder,
    transcript: Transcript,
    caps: Any,
    *,
    priority: Priority | str = Priority.normal,
) -> PassageAnswers:
    """One point per passage and the frame, all requested at once."""
    prompts = builder.prompts
    text = transcript.text.strip()
    parts = passages(text, passage_words=prompts.passage_words, budget=prompts.summary_budget * prompts.points_share)
    language = transcript.language
    started_ns = time.time_ns()

    async def point(part: Passage) -> ChatResult:
        instructions = prompts.passage_instructions.replace("{words}", str(part.point_words))
        messages = builder.messages(instructions, part.text, language, label="Passage")
        return await client.chat(messages, priority=priority, response_format=point_format(part.point_chars))

    frame_messages = builder.messages(prompts.frame_instructions, text, language)
    frame, *answers = await asyncio.gather(
        client.chat(frame_messages, priority=priority, response_format=frame_format(caps)),
        *(point(part) for part in parts),
    )
    finished_ns = time.time_ns()
    results = [*answers, frame]
    points = [(p, part.point_chars) for part, a in zip(parts, answers, strict=True) if (p := parse_point(a.text))]
    outcome = SummaryOutcome(
        text=frame.text,
        model=frame.model,
        ttft_s=frame.ttft_s,
        generation_s=frame.generation_s,
        tokens_in=sum(r.tokens_in for r in results),
        tokens_out=sum(r.tokens_out for r in results),
        requests=len(results),
        attempts=sum(r.attempts for r in results),
        started_ns=started_ns,
        first_token_ns=started_ns + int(frame.ttft_s * 1e9),
        finished_ns=finished_ns,
        results=results,
    )
    return PassageAnswers(points, frame, outcome)


def with_points(content: SummaryContent, points: list[str]) -> SummaryContent:
    """The frame's content with the passages' points (the frame has none of its own)."""
    return content.model_copy(update={"key_points": points[:MAX_PASSAGES] or content.key_points})
