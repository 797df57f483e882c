"""Reading spans back from the JSONL file into per-recording stage tables."""

from __future__ import annotations

import json
from pathlib import Path

from services.common.telemetry import StageSpan
from services.runtime.trace_view import (
    check_trace,
    load_spans,
    missing_stages,
    render_stage_table,
    spans_by_recording,
    stage_rows,
    stage_sum,
)

RID = "01JDZ8W3V0R4N8M0Q2K5T7Y9AB"
OTHER = "01JDZ8W3V0R4N8M0Q2K5T7Y9AC"
S = 1_000_000_000


def _span(name, span_id, parent, start, end, *, trace="a" * 32, rid=RID, service="svc") -> dict:
    attributes = {"kubescribe.recording_id": rid} if rid else {}
    return {
        "name": name,
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "start_ns": int(start * S),
        "end_ns": int(end * S),
        "service": service,
        "status": "UNSET",
        "attributes": attributes,
    }


def _write(path: Path, spans: list[dict], junk: str = "") -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in spans) + junk)
    return path


def _pipeline() -> list[dict]:
    """A recording's trace laid end to end: 10 s total, stages filling it exactly."""
    return [
        _span("ingest", "0" * 15 + "1", None, 0, 1),
        _span("publish", "0" * 15 + "2", "0" * 15 + "1", 0.9, 1, rid=None),  # FastStream's own span
        _span("queue_wait", "0" * 15 + "3", "0" * 15 + "2", 1, 2),
        _span("admission_wait", "0" * 15 + "4", "0" * 15 + "1", 2, 3),
        _span("model_load", "0" * 15 + "5", "0" * 15 + "1", 3, 4),
        _span("transcription", "0" * 15 + "6", "0" * 15 + "1", 4, 6),
        _span("summarization_queue", "0" * 15 + "7", "0" * 15 + "1", 6, 6.5),
        _span("ttft", "0" * 15 + "8", "0" * 15 + "1", 6.5, 7),
        _span("ttft", "0" * 15 + "9", "0" * 15 + "1", 7, 7.5),  # map-reduce: a second request
        _span("generation", "0" * 15 + "a", "0" * 15 + "1", 7.5, 10),
        _span("total", "0" * 15 + "b", "0" * 15 + "1", 0, 10),
    ]


def test_stage_rows_follow_the_pipeline_order_and_merge_repeated_stages(tmp_path: Path) -> None:
    path = _write(tmp_path / "spans.jsonl", _pipeline(), junk='{"torn line\nnot json\n')
    spans = load_spans(path)
    assert len(spans) == 11  # torn and foreign lines skipped
    rows = stage_rows(spans_by_recording(spans)[RID], RID)
    assert [r.stage for r in rows] == list(StageSpan.REQUIRED)
    ttft = next(r for r in rows if r.stage == "ttft")
    assert (ttft.count, ttft.duration_s) == (2, 1.0)
    assert missing_stages(rows) == []
    assert stage_sum(rows) == (10.0, 10.0)
    table = render_stage_table(rows, title="t")
    assert table.row_count == len(StageSpan.REQUIRED) and table.caption is None


def test_a_trace_is_connected_only_with_one_trace_id_and_one_root(tmp_path: Path) -> None:
    spans = load_spans(_write(tmp_path / "a.jsonl", _pipeline()))
    assert check_trace(spans).connected
    broken = _pipeline()
    broken[5]["parent_span_id"] = "f" * 16  # a parent that was never exported
    broken[6]["trace_id"] = "b" * 32  # a stage that started a trace of its own
    by_recording = spans_by_recording(load_spans(_write(tmp_path / "b.jsonl", broken)))
    check = check_trace(by_recording[RID])
    assert not check.connected
    assert len(check.trace_ids) == 2 and "transcription" in check.roots


def test_spans_of_other_recordings_are_kept_apart(tmp_path: Path) -> None:
    other = [_span("ingest", "1" * 16, None, 0, 2, trace="c" * 32, rid=OTHER)]
    spans = load_spans(_write(tmp_path / "spans.jsonl", _pipeline()[:3] + other))
    by_recording = spans_by_recording(spans)
    assert set(by_recording) == {RID, OTHER}
    rows = stage_rows(by_recording[OTHER], OTHER)
    assert [r.stage for r in rows] == ["ingest"]
    assert "total" in missing_stages(rows)
    assert render_stage_table(rows).caption.startswith("no span yet for: queue_wait")


def test_a_missing_span_file_reads_as_no_spans(tmp_path: Path) -> None:
    assert load_spans(tmp_path / "absent.jsonl") == []
