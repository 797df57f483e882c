"""Evaluation: how good are the summaries, per model and prompt variant, on the real local llama.cpp?

Over the transcripts in ``bench/data/summaries/transcripts.jsonl`` (synthesized meetings, calls,
tickets, a recipe, a lecture...: each with its key facts; ``--data conversations``: the same
meetings and facts at a recording's length, ``conversations.jsonl``), every arm (model x prompt variant)
summarizes every transcript through the summarizer's own path (:func:`summarize_structured`, the
``ChatClient``, the real ``LocalLlmServer``) and is scored on:

- **fact recall**: a key fact counts as kept when every one of its key terms occurs in the
  summary. A term is ``a|b`` (either alternative); a numeric alternative matches a number of the
  summary (``10,000`` = ``10000``; number words count: "four" = 4), any other alternative matches
  case-insensitively as a substring (so ``diet`` matches "dietary");
- **compression**: words of the summary (Markdown markers dropped) / words of the transcript;
- **invented numbers**: numbers in the summary that are not in the transcript (same normalisation,
  so "three" in the transcript allows 3 in the summary);
- **copied**: the share of the summary's words that sit in a run of at least ``COPY_RUN`` (8)
  words found verbatim in the transcript (Markdown, owners and due dates left out): a summary that
  restates the transcript keeps facts by keeping its sentences, and recall alone would reward it;
- **invented names**: capitalised words of the summary, not at the start of a line or sentence
  and not in a heading (titles are Title Case), that occur nowhere in the transcript (a
  heuristic, listed per row so a reader can check).

Raw rows go to ``--out`` as JSONL (one file per arm, resumable: rows already there are skipped),
the table to stdout. The machine is shared: tokens/s per arm is printed so readers can correct
for load.

    python bench/summaries.py                                   # both models, all variants
    python bench/summaries.py --models 0.5b --variants default --limit 4
    python bench/summaries.py --data conversations --models 0.5b --variants default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.summarizer.settings import PromptSettings

DATA_DIR = Path(__file__).resolve().parent / "data" / "summaries"
DATA_SETS = {"dense": DATA_DIR / "transcripts.jsonl", "conversations": DATA_DIR / "conversations.jsonl"}
"""``dense``: the 12 meetings in 113-137 words each, every sentence a fact; ``conversations``: the
same meetings, with the same key facts, as recordings would hear them (450-650 words of small talk,
call logistics, questions, read-backs and tangents around the facts)."""
DATA = DATA_SETS["dense"]
OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "summaries"

_NUMBER_RE = re.compile(r"\d+(?:[.,:]\d+)*")
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’.,:%-]*")
_CAPITAL_RE = re.compile(r"(?<![\w.])([A-Z][a-z]+)")
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_UNITS += "seventeen eighteen nineteen twenty"
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
NUMBER_WORDS: dict[str, int] = {
    **{word: i for i, word in enumerate(_UNITS.split())},
    **_TENS,
    "hundred": 100,
    "thousand": 1000,
    "once": 1,
    "twice": 2,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "half": 0,
    "dozen": 12,
}
"""Spelled-out numbers, so "three centers" in one text and "3 centers" in the other agree."""
MARKUP_WORDS = frozenset({"summary", "key", "points", "decisions", "action", "items", "due"})
"""Words of the Markdown rendering's headings, not of the summary's content."""


def normalise_number(token: str) -> str:
    """``10,000`` -> ``10000``, ``05`` -> ``5``, ``14.50`` -> ``14.5``; times (``14:05``) kept as they are."""
    token = token.strip(".,:")
    if ":" not in token:
        token = re.sub(r"(?<=\d),(?=\d{3}\b)", "", token).replace(",", ".")
    if "." in token and ":" not in token:
        token = token.rstrip("0").rstrip(".") or "0"
    if token.isdigit():
        token = str(int(token))
    return token


def numbers_in(text: str) -> set[str]:
    """Every number in ``text``, normalised, spelled-out ones included."""
    found = {normalise_number(m) for m in _NUMBER_RE.findall(text)}
    found |= {str(NUMBER_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS}
    return found


def words_in(text: str) -> int:
    """Words of ``text`` once Markdown markers (``#``, ``-``, ``[ ]``, ``**``) are gone."""
    plain = re.sub(r"[#*]|\[ \]|^\s*-\s", " ", text, flags=re.MULTILINE)
    return len(_WORD_RE.findall(plain))


def term_kept(term: str, summary: str, summary_numbers: set[str]) -> bool:
    """One key term (``a|b``): a numeric alternative matches a number, a word one a substring."""
    lowered = summary.lower()
    for alternative in term.split("|"):
        alternative = alternative.strip()
        if _NUMBER_RE.fullmatch(alternative):
            if normalise_number(alternative) in summary_numbers:
                return True
        elif alternative.lower() in lowered:
            return True
    return False


def fact_recall(facts: Iterable[dict], summary: str) -> tuple[int, list[str]]:
    """How many facts are kept (every term found) and which ones were lost."""
    numbers = numbers_in(summary)
    kept, lost = 0, []
    for fact in facts:
        if all(term_kept(term, summary, numbers) for term in fact["terms"]):
            kept += 1
        else:
            lost.append(fact["fact"])
    return kept, lost


COPY_RUN = 8
"""Words in a row that make a copy: shorter shared runs are names, figures and common phrases
("the end of the month"), which any faithful summary repeats."""
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[.,'’][a-z0-9]+)*")
_ACTION_EXTRAS_RE = re.compile(r"\*\*[^*]+\*\*|\(due [^)]*\)")


def copied_share(summary: str, transcript: str, run: int = COPY_RUN) -> float:
    """Share of the summary's words inside a ``run``-word sequence that the transcript contains verbatim.

    Counted per line (a bullet), so a run never spans two points; headings are left out."""
    said = _TOKEN_RE.findall(transcript.lower())
    runs = {tuple(said[i : i + run]) for i in range(len(said) - run + 1)}
    total = covered = 0
    for line in summary.splitlines():
        if line.lstrip().startswith("#"):
            continue
        words = _TOKEN_RE.findall(_ACTION_EXTRAS_RE.sub(" ", line).lower())
        inside = [False] * len(words)
        for i in range(len(words) - run + 1):
            if tuple(words[i : i + run]) in runs:
                inside[i : i + run] = [True] * run
        total += len(words)
        covered += sum(inside)
    return covered / total if total else 0.0


def invented_numbers(summary: str, transcript: str) -> list[str]:
    """Numbers of the summary that the transcript does not contain (in digits or in words)."""
    allowed = numbers_in(transcript)
    # a time "14:05" in the transcript also allows its parts, which a summary may write alone
    allowed |= {normalise_number(part) for t in allowed if ":" in t for part in t.split(":")}
    return sorted(n for n in numbers_in(summary) - allowed if n not in allowed)


def invented_names(summary: str, transcript: str) -> list[str]:
    """Capitalised words inside a sentence of the summary that never occur in the transcript."""
    known = {w.lower() for w in re.findall(r"[A-Za-z]+", transcript)}
    names: set[str] = set()
    for line in summary.splitlines():
        if line.lstrip().startswith("#"):
            continue  # headings are Title Case: every word would look like a name
        line = re.sub(r"^[\s*\-\[\]x]*", "", line)
        for sentence in re.split(r"(?<=[.!?:;])\s+|\(", line):
            for match in _CAPITAL_RE.finditer(sentence):
                word = match.group(1)
                if match.start() == 0 or word.lower() in known or word.lower() in MARKUP_WORDS:
                    continue
                names.add(word)
    return sorted(names)


@dataclass(frozen=True)
class Score:
    kept: int
    total: int
    compression: float
    invented_numbers: list[str]
    invented_names: list[str]
    lost: list[str]
    copied: float = 0.0

    @property
    def recall(self) -> float:
        return self.kept / self.total if self.total else 1.0


def score(item: dict, summary: str) -> Score:
    """Score one summary of one evaluation transcript."""
    kept, lost = fact_recall(item["facts"], summary)
    return Score(
        kept=kept,
        total=len(item["facts"]),
        compression=words_in(summary) / max(1, words_in(item["text"])),
        invented_numbers=invented_numbers(summary, item["text"]),
        invented_names=invented_names(summary, item["text"]),
        lost=lost,
        copied=copied_share(summary, item["text"]),
    )


# --- the arms -------------------------------------------------------------------------------

LEGACY_INSTRUCTIONS = (
    "Summarize the transcript below in at most five bullet points. Name the main topics, the "
    "decisions taken and any action items with their owners. Answer in the transcript's language."
)
"""The prompt before structured summaries: the baseline the issue reported."""

VARIANTS: dict[str, PromptSettings] = {
    "default": PromptSettings(),
    "budget-0.3": PromptSettings(summary_budget=0.3),
    "budget-0.4": PromptSettings(summary_budget=0.4),
    "fixed-caps": PromptSettings(summary_budget=0.0),
    "plain-json": PromptSettings(
        instructions=LEGACY_INSTRUCTIONS.replace(
            "in at most five bullet points", 'as JSON ("title", "key_points", "decisions", "action_items")'
        )
    ),
    "legacy-prose": PromptSettings(instructions=LEGACY_INSTRUCTIONS, structured=False),
    "focus-200": PromptSettings(focus_words=200),
    "focus-200-512": PromptSettings(focus_words=200),
    "focus-300-512": PromptSettings(focus_words=300),
}
"""``default``: the shipped prompt and length budget (0.5 words per transcript word, in the
grammar); ``budget-0.3`` / ``budget-0.4``: tighter budgets; ``fixed-caps``: the same
prompt with only the fixed caps (the default before the budget); ``plain-json``: the old
instructions asking for the same JSON (does the schema alone fix restating?); ``legacy-prose``:
the old prompt and output, as reported; ``focus-200``: the shipped prompt given only the ~200
most informative words of a longer transcript (:mod:`services.summarizer.focus`): what a local
stack serving the 0.5B uses (``ModelSpec.focus_words``); ``focus-200-512`` / ``focus-300-512``: the
same with 200 or 300 focused words and room for 512 answer tokens (:data:`LLM_OVERRIDES`)."""


LLM_OVERRIDES: dict[str, dict] = {"focus-200-512": {"max_tokens": 512}, "focus-300-512": {"max_tokens": 512}}
"""Arms that also change the LLM settings: ``*-512`` answers in up to 512 tokens
(``KUBESCRIBE_LLM_MAX_TOKENS=512``), which at 256 cap a long transcript's summary at 3 key points,
one decision and one action item (:meth:`LengthCaps.for_transcript`)."""


def load_items(limit: int | None = None, data: Path = DATA) -> list[dict]:
    items = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    return items[:limit] if limit else items


def _model_path(label: str) -> Path | None:
    """The verified GGUF of ``label`` (assembled on first use), ``None`` for an unknown label."""
    from services.runtime import models

    spec = models.MODELS.get(label)
    return models.ensure_model(spec=spec) if spec else None


async def run_arm(
    base_url: str, model_label: str, variant: str, items: list[dict], out: Path, concurrency: int = 1
) -> list[dict]:
    """Summarize every item not yet in ``out`` with one prompt variant; append a row per item."""
    from services.common.settings import LlmSettings
    from services.summarizer.client import ChatClient, RetryPolicy
    from services.summarizer.prompts import PromptBuilder, transcript_from_text
    from services.summarizer.structured import StructuredSummaryError, summarize_structured

    done = {json.loads(line)["id"] for line in out.read_text().splitlines()} if out.exists() else set()
    llm = LlmSettings(base_url=base_url, model=model_label, **LLM_OVERRIDES.get(variant, {}))
    builder = PromptBuilder(llm, VARIANTS[variant])
    rows: list[dict] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(client: ChatClient, item: dict) -> None:
        async with slots:
            started = time.perf_counter()
            transcript = transcript_from_text(item["text"], item["id"])
            try:
                result = await summarize_structured(client, builder, transcript)
                text, parsed, error, outcome = result.outcome.text, result.content is not None, None, result.outcome
            except StructuredSummaryError as exc:
                text, parsed, error, outcome = "", False, str(exc), None
        s = score(item, text)
        row = {
            "id": item["id"],
            "kind": item["kind"],
            "model": model_label,
            "variant": variant,
            "parsed": parsed,
            "error": error,
            "facts_kept": s.kept,
            "facts_total": s.total,
            "recall": round(s.recall, 3),
            "lost": s.lost,
            "words_in": words_in(item["text"]),
            "words_out": words_in(text),
            "compression": round(s.compression, 3),
            "copied": round(s.copied, 3),
            "invented_numbers": s.invented_numbers,
            "invented_names": s.invented_names,
            "requests": outcome.requests if outcome else 0,
            "tokens_in": outcome.tokens_in if outcome else 0,
            "tokens_out": outcome.tokens_out if outcome else 0,
            "generation_s": round(sum(r.generation_s for r in outcome.results), 2) if outcome else 0.0,
            "wall_s": round(time.perf_counter() - started, 2),
            "concurrency": concurrency,
            "summary": text,
        }
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
        print(
            f"  {model_label}/{variant}/{item['id']}: recall {s.recall:.2f} compression {s.compression:.2f} "
            f"invented {s.invented_numbers} {row['wall_s']:.0f}s",
            flush=True,
        )

    async with ChatClient(llm, retry=RetryPolicy(deadline_s=900), max_connections=concurrency) as client:
        await asyncio.gather(*(one(client, item) for item in items if item["id"] not in done))
    return rows


def aggregate(rows: list[dict]) -> dict:
    """One table line per arm: the targets' numbers and the load-correcting throughput."""
    tokens = sum(r["tokens_out"] for r in rows)
    generation = sum(r["generation_s"] for r in rows)
    return {
        "transcripts": len(rows),
        "recall": sum(r["facts_kept"] for r in rows) / max(1, sum(r["facts_total"] for r in rows)),
        "compression_mean": sum(r["compression"] for r in rows) / max(1, len(rows)),
        "compression_max": max((r["compression"] for r in rows), default=0.0),
        "copied": sum(r["copied"] for r in rows) / max(1, len(rows)),
        "invented_numbers": sum(len(r["invented_numbers"]) for r in rows),
        "invented_names": sum(len(r["invented_names"]) for r in rows),
        "parsed": sum(r["parsed"] for r in rows),
        "tokens_per_s": tokens / generation if generation else 0.0,
        "concurrency": max((r.get("concurrency", 1) for r in rows), default=1),
        "wall_s_mean": sum(r["wall_s"] for r in rows) / max(1, len(rows)),
    }


def table(arms: dict[tuple[str, str], list[dict]]) -> str:
    lines = [
        "| model | prompt | transcripts | facts kept | words out/in (mean, max) | copied | invented numbers | "
        "invented names | JSON valid | tokens/s | s per summary |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, variant), rows in arms.items():
        a = aggregate(rows)
        lines.append(
            f"| {model} | {variant} | {a['transcripts']} | {a['recall']:.0%} | "
            f"{a['compression_mean']:.0%}, {a['compression_max']:.0%} | {a['copied']:.0%} | {a['invented_numbers']} | "
            f"{a['invented_names']} | {a['parsed']}/{a['transcripts']} | {a['tokens_per_s']:.1f} | "
            f"{a['wall_s_mean']:.0f} |"
        )
    return "\n".join(lines)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="0.5b,1.5b", help="comma-separated keys of runtime.models.MODELS")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--limit", type=int, default=None, help="only the first N transcripts")
    parser.add_argument("--data", choices=DATA_SETS, default="dense", help="which transcripts (see DATA_SETS)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"rows' directory (default {OUT}, and its conversations/ for that set)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="summaries at once (llama.cpp decodes them in one batch)"
    )
    parser.add_argument("--report", action="store_true", help="print the table of what --out holds, run nothing")
    args = parser.parse_args(argv)
    models_wanted = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    if args.out is None:
        args.out = OUT if args.data == "dense" else OUT / args.data
    args.out.mkdir(parents=True, exist_ok=True)
    items = load_items(args.limit, DATA_SETS[args.data])
    wanted_ids = {item["id"] for item in items}
    if not args.report:
        from services.runtime.llm_local import LocalLlmServer

        for label in models_wanted:
            path = _model_path(label)
            if path is None:
                print(f"unknown model {label!r}: see services/runtime/models.py MODELS", file=sys.stderr)
                return 2
            with LocalLlmServer(path, threads=args.threads, parallel=args.concurrency) as server:
                for variant in variants:
                    out = args.out / f"{label}-{variant}.jsonl"
                    asyncio.run(run_arm(server.base_url, label, variant, items, out, args.concurrency))
    texts = {item["id"]: item["text"] for item in items}
    arms = {
        (label, variant): [
            {"copied": copied_share(r["summary"], texts[r["id"]]), **r}  # rows from before the metric
            for r in read_rows(args.out / f"{label}-{variant}.jsonl")
            if r["id"] in wanted_ids
        ]
        for label in models_wanted
        for variant in variants
    }
    print(table({k: v for k, v in arms.items() if v}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
