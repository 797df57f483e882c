"""Per-passage summaries: how a transcript is cut into passages and what each request may write."""

from __future__ import annotations

import jsonschema
import pytest

from services.summarizer.passages import (
    MAX_PASSAGES,
    MIN_POINT_WORDS,
    frame_format,
    parse_point,
    passages,
    point_format,
)
from services.summarizer.structured import LengthCaps

SENTENCES = [f"Sentence number {i} says that item {i} costs {i * 10} dollars." for i in range(1, 13)]


def test_passages_cover_the_transcript_in_order_at_sentence_ends() -> None:
    text = " ".join(SENTENCES)
    parts = passages(text, passage_words=25, budget=0.35)
    assert " ".join(p.text for p in parts) == text  # nothing dropped, nothing reordered
    assert all(p.text.endswith(".") for p in parts)
    assert len(parts) == MAX_PASSAGES  # 108 words: five passages, not more, however long
    sizes = [p.words for p in parts]
    assert max(sizes) - min(sizes) <= max(len(s.split()) for s in SENTENCES)  # one sentence of slack


@pytest.mark.parametrize(("words", "expected"), [(9, 1), (45, 2), (75, 3)])
def test_a_short_transcript_gets_fewer_passages(words: int, expected: int) -> None:
    text = " ".join(SENTENCES[: words // 9])
    assert len(passages(text, passage_words=25, budget=0.35)) == expected


def test_each_point_gets_its_passage_share_of_the_budget_but_room_for_a_fact() -> None:
    parts = passages(" ".join(SENTENCES), passage_words=25, budget=0.35)
    for part in parts:
        assert part.point_words == max(MIN_POINT_WORDS, int(0.35 * part.words))
        schema = point_format(part.point_chars)["json_schema"]["schema"]
        assert schema["properties"]["point"]["maxLength"] == part.point_chars
    assert passages("", passage_words=25, budget=0.35) == []


def test_the_frame_schema_has_everything_but_key_points() -> None:
    schema = frame_format(LengthCaps(decisions=1, action_items=2))["json_schema"]["schema"]
    assert "key_points" not in schema["properties"] and "key_points" not in schema["required"]
    jsonschema.validate({"title": "t", "decisions": [], "action_items": []}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"title": "t", "decisions": ["a", "b"], "action_items": []}, schema)


@pytest.mark.parametrize(
    ("answer", "point"),
    [
        ('{"point": "Revenue 412 million dollars,  up 8 percent"}', "Revenue 412 million dollars, up 8 percent"),
        ('{"point": ""}', ""),
        ("prose, no JSON", ""),
        ('{"point": "cut off', ""),
        ("[1, 2]", ""),
    ],
)
def test_a_point_is_read_from_the_answer_or_is_empty(answer: str, point: str) -> None:
    assert parse_point(answer) == point
