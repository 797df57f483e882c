"""Structured summaries: parsing and normalising the model's JSON, the schema sent to the server, Markdown."""

from __future__ import annotations

import json

import jsonschema
import pytest

from services.common.documents import ActionItem, Summary, SummaryContent
from services.summarizer.render import render_markdown
from services.summarizer.structured import (
    CHARS_PER_TOKEN,
    CHARS_PER_WORD,
    MAX_ACTION_ITEMS,
    MIN_POINT_CHARS,
    POINT_MAX_CHARS,
    LengthCaps,
    StructuredSummaryError,
    ground_action_items,
    parse_content,
    response_format,
    response_schema,
    structured_fields,
    uncut,
)

ANSWER = {
    "title": "Release moved to Wednesday",
    "key_points": ["Billing export fails for invoices over 10,000 lines", "Rate limiter done"],
    "decisions": ["Move the release from Monday to Wednesday"],
    "action_items": [
        {"task": "Grant staging database access", "owner": "Priya", "due": "today"},
        {"task": "Fix the billing export", "owner": "Tom", "due": "Thursday"},
        {"task": "Write the load test", "owner": "unknown", "due": "N/A"},
    ],
}


def test_parses_a_valid_answer_and_normalises_unknown_owners() -> None:
    content = parse_content(json.dumps(ANSWER))
    assert content.title == "Release moved to Wednesday"
    assert content.key_points[0].endswith("10,000 lines")
    assert content.action_items[1] == ActionItem(task="Fix the billing export", owner="Tom", due="Thursday")
    assert content.action_items[2] == ActionItem(task="Write the load test", owner=None, due=None)


def test_parses_an_answer_in_code_fences_and_drops_blank_points() -> None:
    answer = {**ANSWER, "key_points": ["  Rate   limiter done ", ""]}
    content = parse_content(f"```json\n{json.dumps(answer)}\n```")
    assert content.key_points == ["Rate limiter done"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Here is a summary: the team met.", "no JSON object"),
        ('{"title": "cut off", "key_points": ["a", ', "not valid JSON"),
        (json.dumps({**ANSWER, "key_points": [f"p{i}" for i in range(6)]}), "key_points"),
        (json.dumps({**ANSWER, "title": "  "}), "title is empty"),
        (json.dumps({**ANSWER, "mood": "happy"}), "mood"),
        ("[1, 2]", "no JSON object"),
    ],
)
def test_invalid_answers_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(StructuredSummaryError, match=reason):
        parse_content(text)


def test_response_schema_accepts_the_model_and_bounds_the_answer() -> None:
    schema = response_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema  # servers' grammar converters inline nothing
    jsonschema.validate(ANSWER, schema)
    jsonschema.validate(SummaryContent.model_validate(ANSWER).model_dump(), schema)
    for too_much in (
        {**ANSWER, "key_points": [f"p{i}" for i in range(6)]},
        {**ANSWER, "key_points": ["x" * (POINT_MAX_CHARS + 1)]},
        {**ANSWER, "action_items": [{"task": "t", "owner": None, "due": None}] * (MAX_ACTION_ITEMS + 1)},
        {**ANSWER, "extra": 1},
        {k: v for k, v in ANSWER.items() if k != "decisions"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(too_much, schema)
    assert response_format()["json_schema"]["schema"] == schema


def test_markdown_of_a_structured_summary() -> None:
    content = parse_content(json.dumps(ANSWER))
    summary = Summary(
        recording_id="r",
        text=render_markdown(content),
        model="m",
        ttft_s=0.1,
        generation_s=1.0,
        tokens_in=10,
        tokens_out=5,
        **structured_fields(content),
    )
    assert render_markdown(summary) == (
        "# Release moved to Wednesday\n\n"
        "## Key points\n\n- Billing export fails for invoices over 10,000 lines\n- Rate limiter done\n\n"
        "## Decisions\n\n- Move the release from Monday to Wednesday\n\n"
        "## Action items\n\n- [ ] Grant staging database access (**Priya**, due today)\n"
        "- [ ] Fix the billing export (**Tom**, due Thursday)\n- [ ] Write the load test\n"
    )
    assert summary.text == render_markdown(summary)


def test_sections_without_items_are_left_out() -> None:
    content = SummaryContent(title="Nothing decided", key_points=["We talked"])
    assert render_markdown(content) == "# Nothing decided\n\n## Key points\n\n- We talked\n"


def test_an_older_summary_document_still_parses_and_renders() -> None:
    old = {
        "recording_id": "r",
        "text": "- point one\n- point two",
        "model": "m",
        "ttft_s": 0.1,
        "generation_s": 1.0,
        "tokens_in": 10,
        "tokens_out": 5,
        "requests": 1,
        "created_at": "2026-01-01T00:00:00Z",
    }
    summary = Summary.model_validate_json(json.dumps(old))
    assert summary.title is None and summary.key_points is None
    assert render_markdown(summary) == "# Summary\n\n- point one\n- point two\n"
    assert structured_fields(None) == {}


@pytest.mark.parametrize("words", [40, 120, 250, 400])
def test_a_short_transcript_gets_caps_sized_to_its_budget(words: int) -> None:
    caps = LengthCaps.for_transcript(words, 0.4)
    schema = response_schema(caps)
    key_points = schema["properties"]["key_points"]
    assert key_points["maxItems"] == caps.key_points and key_points["items"]["maxLength"] == caps.point_chars
    # Filling every list to its cap overshoots the budget by at most the two one-item lists,
    # however short the transcript: the grammar, not the model's goodwill, bounds the length.
    items = caps.key_points + caps.decisions + caps.action_items
    assert (items - 2) * caps.point_chars <= max(0.4 * words * CHARS_PER_WORD, 2 * caps.point_chars)
    assert caps.key_points >= 2  # a summary with one point is a title


@pytest.mark.parametrize("max_tokens", [128, 256, 512])
@pytest.mark.parametrize("budget", [0.0, 0.5])
def test_caps_filled_to_the_brim_fit_in_max_tokens(max_tokens: int, budget: float) -> None:
    """A long transcript's caps used to allow ~1,700 characters in a 256-token answer: the answer
    was cut mid-JSON and the recording failed (3 of 12 long conversations, 1.5B model)."""
    caps = LengthCaps.for_transcript(600, budget, max_tokens)
    lists = (caps.key_points + caps.decisions + caps.action_items - 2) * caps.point_chars
    assert lists + caps.title_chars <= max(max_tokens * CHARS_PER_TOKEN, 3 * MIN_POINT_CHARS + caps.title_chars)
    assert caps.key_points >= 2
    assert LengthCaps.for_transcript(100, 0.5, 4096) == LengthCaps.for_transcript(100, 0.5)  # room to spare


def test_a_long_transcript_or_no_budget_gets_the_fixed_caps() -> None:
    assert LengthCaps.for_transcript(5000, 0.4) == LengthCaps()
    assert LengthCaps.for_transcript(50, 0.0) == LengthCaps()
    assert response_schema() == response_schema(LengthCaps())


def test_owners_and_due_dates_nobody_said_are_dropped() -> None:
    said = "Maria will send the revised budget by next Friday, and the team reviews it."
    content = SummaryContent(
        title="Budget",
        key_points=["Budget revised"],
        action_items=[
            ActionItem(task="Send the budget", owner="Maria", due="next Friday"),
            ActionItem(task="Prepare the rice", owner="Chef", due="2023-04-15"),
            ActionItem(task="Review", owner="the team", due=None),
        ],
    )
    grounded = ground_action_items(content, said)
    owners_and_dues = [(i.owner, i.due) for i in grounded.action_items]
    assert owners_and_dues == [("Maria", "next Friday"), (None, None), ("the team", None)]
    assert [i.task for i in grounded.action_items] == [i.task for i in content.action_items]  # tasks stay


def test_a_point_the_grammar_cut_ends_at_its_last_clause() -> None:
    caps = LengthCaps(point_chars=90)
    cut = "We closed 9 deals this month for a total of 540,000 dollars, which is 90 percent of the 10"
    words = "I finished the login page and fixed two bugs in the payment service and then I startedxxxx"
    whole = "Travel costs are cut."
    content = SummaryContent(title="Pipeline", key_points=[cut[:90], words[:90], whole])
    points = uncut(content, caps).key_points
    # The half number ("10" of "100,000") is gone with its clause; an uncut point is untouched.
    assert points == [
        "We closed 9 deals this month for a total of 540,000 dollars",
        words[:90].rsplit(" ", 1)[0] + "…",
        whole,
    ]
