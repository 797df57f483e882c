"""Structured summaries: ask the LLM for JSON, validate it, render it as Markdown.

The request carries ``response_format`` with the JSON schema of
:class:`~services.common.documents.SummaryContent` (tightened with length limits), which
llama.cpp (the embedded server) and vLLM (llm-d) turn into a grammar that decoding must
follow: the answer parses by construction, and the limits keep a small model from restating
the transcript. What can still go wrong:

- the answer was cut at ``max_tokens`` (broken JSON): one repair request (fixed instructions,
  the broken answer last) asks for it again, shorter;
- the server ignored ``response_format`` and answered prose (no ``{`` at all, e.g. the
  simulator): the prose is kept as the summary's ``text``, with no structured fields, as
  before structured summaries existed.

The map-reduce of long transcripts is :func:`~services.summarizer.domain.summarize_transcript`'s;
here every one of its requests asks for JSON, so partial summaries are JSON the reduce merges.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.common.documents import ActionItem, SummaryContent, Transcript
from services.common.errors import PermanentError
from services.common.events import Priority
from services.summarizer.client import ChatClient, ChatResult
from services.summarizer.domain import SummaryOutcome, summarize_transcript
from services.summarizer.focus import focus
from services.summarizer.prompts import PromptBuilder
from services.summarizer.render import render_markdown

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 100
POINT_MAX_CHARS = 120
"""About 18 words: a point, not a paragraph. Enforced while decoding, so a point cannot restate the transcript."""
MAX_DECISIONS = 3
MAX_ACTION_ITEMS = 4
_NO_VALUE = frozenset({"", "none", "null", "n/a", "na", "unknown", "not specified", "unspecified", "tbd", "-"})
"""What small models write for an owner or due date nobody said: stored as ``None``."""


class StructuredSummaryError(PermanentError):
    """The model's answer is not a valid summary object (after the repair attempts)."""


def _inline_refs(node: Any, defs: dict[str, Any], *, schema: bool = True) -> Any:
    """``node`` with every ``$ref`` replaced by its definition and annotations dropped (a smaller grammar)."""
    if isinstance(node, dict):
        if schema and "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {
            k: _inline_refs(v, defs, schema=k != "properties" if schema else True)
            for k, v in node.items()
            if not schema or k not in ("$defs", "title", "examples", "description", "default")
        }
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


CHARS_PER_WORD = 6.0
"""English averages ~4.7 letters per word plus a space; rounded up so the budget errs long."""
CHARS_PER_TOKEN = 2.2
"""Characters of the rendered summary per answer token (JSON keys, quotes and commas included).
Measured on the evaluation's single-request answers (docs/results/summaries: 34 rows of the 0.5B
and the 1.5B): median 2.58, lowest 1.76; 2.2 lets a typical answer filled to its caps finish
within ``max_tokens``."""
MIN_POINT_CHARS = 90
"""About 15 words, what the instructions ask a point to be. Below that the grammar cuts points
mid-phrase ("... and to move to contractors to"): one point fewer reads better than a cut one."""


@dataclass(frozen=True)
class LengthCaps:
    """How much the grammar lets the model write: items per list and characters per item."""

    key_points: int = 5
    point_chars: int = POINT_MAX_CHARS
    title_chars: int = TITLE_MAX_CHARS
    decisions: int = MAX_DECISIONS
    action_items: int = MAX_ACTION_ITEMS

    @classmethod
    def for_transcript(cls, words: int, budget: float, max_tokens: int | None = None) -> LengthCaps:
        """Caps sized to ``budget`` x ``words`` words (0: the fixed caps), and to ``max_tokens``.

        Why the grammar and not the prompt: asked for "half the length", a 0.5B model writes as
        much as it otherwise would; a ``maxItems`` or ``maxLength`` it cannot exceed. The title
        is outside the budget (one line, as long as a point), and the lists share what is left in
        the order a reader needs them: key points first, then decisions, then action items (a
        model that fills every list overshoots by one or two items; the evaluation measures what
        they write). A long
        transcript gets the fixed caps, which are already far below half of it, unless they do
        not fit in ``max_tokens``: filled, the fixed caps are ~1,700 characters, ~650 tokens,
        and an answer cut at ``max_tokens`` is broken JSON that the repair request rarely saves
        (5 of 24 summaries of the 450-650-word conversations failed so at the default 256).
        """
        fixed = cls()
        limits = [int(budget * words * CHARS_PER_WORD)] if budget > 0 else []
        if max_tokens:
            limits.append(int(max_tokens * CHARS_PER_TOKEN) - fixed.title_chars)  # the title takes its share first
        if not limits:
            return fixed
        chars = min(limits)
        point = max(MIN_POINT_CHARS, min(POINT_MAX_CHARS, chars // 4))
        slots = max(1, chars // point)
        key_points = min(fixed.key_points, max(2, slots - 1))
        # Most conversations decide little and assign less: one slot each is kept even when the
        # key points take the budget, since an empty list costs nothing.
        decisions = min(fixed.decisions, max(1, (slots - key_points) // 2))
        action_items = min(fixed.action_items, max(1, slots - key_points - decisions))
        return cls(
            key_points=key_points,
            point_chars=point,
            title_chars=min(TITLE_MAX_CHARS, point),
            decisions=decisions,
            action_items=action_items,
        )


@functools.cache
def _document_schema() -> dict[str, Any]:
    """The document model's schema with its ``$ref`` inlined: generating it cost ~5 % of the
    summarizer's CPU per summary in ``bench/controlplane.py``, and it never changes in a process."""
    schema = SummaryContent.model_json_schema()
    return _inline_refs(schema, copy.deepcopy(schema.get("$defs", {})))


def response_schema(caps: LengthCaps | None = None) -> dict[str, Any]:
    """The JSON schema sent to the server: the document model's, without ``$ref``, with length limits.

    Derived from :class:`SummaryContent` so the two cannot drift; the limits exist only here,
    because they steer generation while the stored model stays tolerant of older answers.
    """
    caps = caps or LengthCaps()
    schema = copy.deepcopy(_document_schema())
    props = schema["properties"]
    props["title"]["maxLength"] = caps.title_chars
    props["key_points"]["items"]["maxLength"] = caps.point_chars
    props["key_points"]["minItems"] = 1
    props["key_points"]["maxItems"] = caps.key_points
    props["decisions"]["items"]["maxLength"] = caps.point_chars
    props["decisions"]["maxItems"] = caps.decisions
    props["action_items"]["maxItems"] = caps.action_items
    item = props["action_items"]["items"]
    item["properties"]["task"]["maxLength"] = caps.point_chars
    item["required"] = ["task", "owner", "due"]  # the model must consider both (null when nobody said them)
    schema["required"] = ["title", "key_points", "decisions", "action_items"]
    schema["additionalProperties"] = False
    return schema


def response_format(caps: LengthCaps | None = None) -> dict[str, Any]:
    """OpenAI's ``response_format`` for the summary object (llama.cpp server and vLLM accept it)."""
    schema = response_schema(caps)
    return {"type": "json_schema", "json_schema": {"name": "summary", "strict": True, "schema": schema}}


_FENCE_RE = re.compile(r"^```(?:json)?\s*|\s*```$")


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return None if value.lower().strip(".") in _NO_VALUE else value


def parse_content(text: str) -> SummaryContent:
    """Validate the model's answer as a :class:`SummaryContent`, normalising what small models do.

    Code fences around the object are dropped, blank points removed, "unknown"-like owners and
    due dates stored as ``None``. Anything else invalid is :class:`StructuredSummaryError`
    naming the first problem.
    """
    raw = _FENCE_RE.sub("", text.strip())
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0:
        raise StructuredSummaryError(f"the answer has no JSON object: {text[:120]!r}")
    try:
        data = json.loads(raw[start : end + 1] if end > start else raw[start:])  # unclosed: cut at max_tokens
    except ValueError as exc:
        raise StructuredSummaryError(f"the answer is not valid JSON ({exc}): {text[:120]!r}") from exc
    if not isinstance(data, dict):
        raise StructuredSummaryError("the answer is not a JSON object")
    try:
        content = SummaryContent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        raise StructuredSummaryError(f"the answer's {where} is invalid: {first['msg']}") from exc
    title = _clean(content.title)
    if not title:
        raise StructuredSummaryError("the answer's title is empty")
    return SummaryContent(
        title=title,
        key_points=[p for p in map(_clean, content.key_points) if p],
        decisions=[d for d in map(_clean, content.decisions) if d],
        action_items=[
            ActionItem(task=task, owner=_clean(item.owner), due=_clean(item.due))
            for item in content.action_items
            if (task := _clean(item.task))
        ],
    )


_TOKEN_RE = re.compile(r"[^\W_]+")


def _said(value: str | None, spoken: set[str]) -> str | None:
    """``value`` if every word and number of it was said, else ``None``."""
    if value is None:
        return None
    tokens = [t.lower() for t in _TOKEN_RE.findall(value)]
    return value if tokens and all(t in spoken for t in tokens) else None


def ground_action_items(content: SummaryContent, transcript_text: str) -> SummaryContent:
    """Owners and due dates nobody said are stored as ``None``.

    Why: asked for an owner and a due date, a small model fills the slots with the plausible
    ("Chef", "2023-04-15") where the schema allows ``null``; the evaluation counted those as
    invented facts in most summaries of the 0.5B model. An owner or due date is kept only when
    each of its words occurs in the transcript ("Maria", "next Friday"); a reformatted one that
    was said ("Fri") is lost, which costs less than a date the speaker never gave.
    """
    spoken = {t.lower() for t in _TOKEN_RE.findall(transcript_text)}
    items = [
        item.model_copy(update={"owner": _said(item.owner, spoken), "due": _said(item.due, spoken)})
        for item in content.action_items
    ]
    return content.model_copy(update={"action_items": items})


_CLAUSE_END_RE = re.compile(r"[,;:.)](?=\s)|\s[-–]\s")


def _uncut(text: str, limit: int) -> str:
    """``text`` as the grammar left it, or, when it stopped at ``limit``, without the cut clause.

    A small model does not plan for ``maxLength``: the grammar ends the string mid-phrase, and a
    number cut in half ("90 percent of the 10" for "100,000") is an invented number. The text
    is cut back to its last clause boundary when that keeps at least 40 % of it, else to its last
    whole word, marked with an ellipsis.
    """
    if len(text) < limit - 1:
        return text
    ends = [m.start() for m in _CLAUSE_END_RE.finditer(text) if m.start() >= 0.4 * len(text)]
    if ends:
        return text[: ends[-1]].rstrip(" ,;:-–")
    head = text.rsplit(" ", 1)[0] if " " in text else text
    return head.rstrip(" ,;:-–") + "…"


def uncut(content: SummaryContent, caps: LengthCaps) -> SummaryContent:
    """Every point, decision and task the grammar cut at its length limit ends at a clause."""
    return content.model_copy(
        update={
            "title": _uncut(content.title, caps.title_chars),
            "key_points": [_uncut(p, caps.point_chars) for p in content.key_points],
            "decisions": [_uncut(d, caps.point_chars) for d in content.decisions],
            "action_items": [
                i.model_copy(update={"task": _uncut(i.task, caps.point_chars)}) for i in content.action_items
            ],
        }
    )


def structured_fields(content: SummaryContent | None) -> dict[str, Any]:
    """The optional :class:`Summary` fields for ``content`` (none for a prose summary)."""
    return content.model_dump() if content is not None else {}


class _JsonChat:
    """A :class:`ChatClient` whose every request asks for the summary object; what domain.py calls."""

    def __init__(self, client: ChatClient, caps: LengthCaps) -> None:
        self.client = client
        self.settings = client.settings
        self._format = response_format(caps)

    async def chat(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> ChatResult:
        return await self.client.chat(messages, response_format=self._format, **kwargs)


@dataclass
class StructuredOutcome:
    """The summary outcome (text rendered from the content when there is one) and the content."""

    outcome: SummaryOutcome
    content: SummaryContent | None


async def summarize_structured(
    client: ChatClient, builder: PromptBuilder, transcript: Transcript, *, priority: Priority | str = Priority.normal
) -> StructuredOutcome:
    """Summarize ``transcript`` as a :class:`SummaryContent` (prose when the server will not do JSON)."""
    prompts = builder.prompts
    caps = LengthCaps.for_transcript(len(transcript.text.split()), prompts.summary_budget, client.settings.max_tokens)
    chat = _JsonChat(client, caps) if prompts.structured else client
    focused = focus(transcript.text, prompts.focus_words)
    told = transcript if focused == transcript.text else transcript.model_copy(update={"text": focused, "segments": []})
    outcome = await summarize_transcript(chat, builder, told, priority=priority)  # type: ignore[arg-type]
    if not prompts.structured:
        return StructuredOutcome(outcome, None)
    answer = outcome.text
    for attempt in range(prompts.repair_attempts + 1):
        try:
            content = uncut(ground_action_items(parse_content(answer), transcript.text), caps)
        except StructuredSummaryError as exc:
            if "{" not in answer:
                logger.info("the LLM answered prose, not JSON: keeping it as the summary text")
                return StructuredOutcome(outcome, None)
            if attempt == prompts.repair_attempts:
                raise StructuredSummaryError(
                    f"the LLM's summary is still invalid after {attempt} repair request(s): {exc}"
                ) from exc
            logger.info("repairing the LLM's summary: %s", exc)
            messages = builder.repair_messages(answer, str(exc), transcript.language)
            repaired = await chat.chat(messages, priority=priority)
            _add(outcome, repaired)
            answer = repaired.text
            continue
        outcome.text = render_markdown(content)
        return StructuredOutcome(outcome, content)
    raise AssertionError("unreachable")  # pragma: no cover


def _add(outcome: SummaryOutcome, result: ChatResult) -> None:
    outcome.results.append(result)
    outcome.requests += 1
    outcome.attempts += result.attempts
    outcome.tokens_in += result.tokens_in
    outcome.tokens_out += result.tokens_out
