"""Summarizing one transcript with a chat client: one request, or map-reduce when it is too long.

No NATS here: the consumer (consumer.py) and ``kubescribe summarize`` both call
:func:`summarize_transcript`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.common.documents import Transcript
from services.common.events import Priority
from services.summarizer.client import ChatClient, ChatResult
from services.summarizer.prompts import PromptBuilder, transcript_pieces

MAX_REDUCE_ROUNDS = 6
"""Each round shrinks the input by roughly the map fan-in; six rounds cover any realistic recording."""


@dataclass
class SummaryOutcome:
    """The summary text plus the numbers the Summary document and the status record."""

    text: str
    model: str
    ttft_s: float
    """Of the final request (the one whose tokens the reader sees first)."""
    generation_s: float
    """Of the final request."""
    tokens_in: int
    tokens_out: int
    requests: int
    attempts: int
    started_ns: int
    first_token_ns: int
    finished_ns: int
    results: list[ChatResult] = field(default_factory=list)


async def summarize_transcript(
    client: ChatClient, builder: PromptBuilder, transcript: Transcript, *, priority: Priority | str = Priority.normal
) -> SummaryOutcome:
    """Summarize ``transcript``; the final request's timings are the ones reported as TTFT and generation."""
    results: list[ChatResult] = []
    language = transcript.language
    text = transcript.text.strip() or " ".join(transcript_pieces(transcript))
    if builder.fits(text):
        started_ns = time.time_ns()
        final = await client.chat(builder.summary_messages(text, language), priority=priority)
    else:
        partials = [
            (await client.chat(builder.map_messages(part, language), priority=priority))
            for part in builder.chunk(transcript_pieces(transcript))
        ]
        results.extend(partials)
        for _ in range(MAX_REDUCE_ROUNDS):
            texts = [r.text for r in partials]
            if builder.fits("\n\n".join(texts)):
                break
            partials = [
                await client.chat(builder.reduce_messages([group], language), priority=priority)
                for group in builder.chunk(texts)
            ]
            results.extend(partials)
        started_ns = time.time_ns()
        final = await client.chat(builder.reduce_messages([r.text for r in partials], language), priority=priority)
    results.append(final)
    finished_ns = time.time_ns()
    return SummaryOutcome(
        text=final.text,
        model=final.model,
        ttft_s=final.ttft_s,
        generation_s=final.generation_s,
        tokens_in=sum(r.tokens_in for r in results),
        tokens_out=sum(r.tokens_out for r in results),
        requests=len(results),
        attempts=sum(r.attempts for r in results),
        started_ns=started_ns,
        first_token_ns=started_ns + int(final.ttft_s * 1e9),
        finished_ns=finished_ns,
        results=results,
    )
