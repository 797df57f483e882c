"""The trace format: round trip, JSON Schema, and readable errors for bad lines."""

from __future__ import annotations

import json

import jsonschema
import pytest

from loadgen.errors import TraceError
from loadgen.make import preset
from loadgen.trace import TRACE_SCHEMA_FILE, TraceItem, example_line, read_trace, schema_files, write_trace


def test_round_trip(tmp_path):
    items = preset("kueue", seed=3, audio="tone") + preset("llm", count=3)
    path = write_trace(tmp_path / "t.jsonl", items)
    assert read_trace(path) == items


def test_every_line_validates_against_the_exported_schema(tmp_path):
    schema = schema_files()[TRACE_SCHEMA_FILE]
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    path = write_trace(tmp_path / "t.jsonl", preset("das", seed=1) + preset("llm", count=2))
    for line in path.read_text().splitlines():
        validator.validate(json.loads(line))
    validator.validate(json.loads(example_line()))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "a", "offset_s": -1, "audio": {"kind": "tone", "duration_s": 1}}', "offset_s"),
        ('{"id": "a", "offset_s": 0}', "exactly one of `audio`"),
        ('{"id": "a", "offset_s": 0, "audio": {"kind": "midi"}}', "audio"),
        ('{"id": "a", "offset_s": 0, "audio": {"kind": "tone", "duration_s": 1}, "tenant": "Not A Label"}', "tenant"),
        ("not json", "invalid trace item"),
    ],
)
def test_bad_lines_name_the_file_line_and_field(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(example_line() + "\n" + line + "\n")
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert f"{path}:2:" in str(info.value)
    assert expected in str(info.value)


def test_duplicate_ids_and_empty_traces_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(example_line() + "\n# a comment\n\n" + example_line() + "\n")
    with pytest.raises(TraceError, match="duplicate id 'k000' \\(first on line 1\\)"):
        read_trace(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TraceError, match="no items"):
        read_trace(empty)
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.jsonl")


def test_prompt_items_need_no_audio():
    item = TraceItem(id="p", offset_s=0, prompt="hello", max_tokens=8)
    assert item.audio is None


def test_public_names_resolve():
    import loadgen

    assert loadgen.__all__ == sorted(loadgen.__all__)
    for name in loadgen.__all__:
        assert getattr(loadgen, name) is not None, name
    with pytest.raises(AttributeError):
        loadgen.no_such_name  # noqa: B018
