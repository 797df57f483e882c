"""The paper's GAIE workload, synthesized: 16 earnings-call transcripts of ~8-9k tokens each.

The paper prompts with Earnings-22 transcripts ("Summarize this company earnings call audio
transcript: ..."), 16 distinct ones, so each repeats ~16 times in 256 requests per level. The
recordings cannot be downloaded at run time here, so the transcripts are generated: seeded
sentences in an earnings call's vocabulary, with speaker turns, until a length drawn from
8,000-9,000 tokens (counted with the simulator's tokenizer, words and punctuation, which is close
to a BPE count for English prose). What matters for routing is kept: the length, the number of
distinct prompts, and that every request of a prompt shares its whole ~8.5k-token prefix.
"""

from __future__ import annotations

import random

from loadgen.trace import TraceItem
from services.runtime.sim.engine import TOKEN_RE, tokenize

INSTRUCTION = "Summarize this company earnings call audio transcript: "
PROMPTS = 16
TOKENS = (8000, 9000)
OUTPUT_TOKENS = 512

_SPEAKERS = ("Operator", "Chief Executive Officer", "Chief Financial Officer", "Analyst", "Head of Investor Relations")
_SUBJECTS = (
    "revenue", "gross margin", "operating income", "free cash flow", "the backlog", "subscription revenue",
    "our services segment", "international sales", "the hardware business", "customer retention",
    "operating expenses", "capital expenditure", "the dividend", "net debt", "earnings per share",
)  # fmt: skip
_VERBS = ("grew", "declined", "came in at", "improved", "was flat at", "expanded", "contracted", "reached")
_AMOUNTS = ("3 percent", "12 percent", "1.4 billion dollars", "250 million dollars", "record levels", "guidance")
_TAILS = (
    "compared with the same quarter last year",
    "driven by strong demand in North America",
    "reflecting pricing actions taken in the second half",
    "despite currency headwinds in Europe",
    "as supply chain constraints eased",
    "ahead of the range we gave in our last call",
    "and we expect the trend to continue into next year",
    "partly offset by higher logistics costs",
)
_QUESTIONS = (
    "Can you give us more color on",
    "How should we think about",
    "Could you walk us through",
    "What are your assumptions for",
)


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"{rng.choice(_QUESTIONS)} {rng.choice(_SUBJECTS)} in the coming quarters?"
    return f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_AMOUNTS)}, {rng.choice(_TAILS)}."


def transcript(index: int, seed: int = 0, tokens: tuple[int, int] = TOKENS) -> str:
    """One synthetic transcript; deterministic in (index, seed), its length uniform in ``tokens``."""
    rng = random.Random(f"earnings-call-{seed}-{index}")
    target = rng.randint(*tokens) - len(tokenize(INSTRUCTION))
    company = f"Company {index + 1:02d}"
    parts = [f"Operator: Good morning and welcome to the {company} quarterly earnings conference call."]
    count = len(tokenize(parts[0]))
    while count < target:
        turn = f"{rng.choice(_SPEAKERS)}: " + " ".join(_sentence(rng) for _ in range(rng.randint(2, 6)))
        parts.append(turn)
        count += len(tokenize(turn))
    text = " ".join(parts)
    ends = [m.end() for m in TOKEN_RE.finditer(text)]
    return text[: ends[min(target, len(ends)) - 1]]  # trim to the drawn length, on a token boundary


def transcript_prompts(
    count: int = PROMPTS, *, seed: int = 0, max_tokens: int = OUTPUT_TOKENS, tokens: tuple[int, int] = TOKENS
) -> list[TraceItem]:
    """The paper's prompts: the instruction, then one of ``count`` distinct transcripts."""
    return [
        TraceItem(
            id=f"call{i:02d}", offset_s=0, prompt=INSTRUCTION + transcript(i, seed, tokens), max_tokens=max_tokens
        )
        for i in range(count)
    ]
