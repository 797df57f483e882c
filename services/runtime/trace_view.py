"""Reading the JSONL span file back: one recording's trace as a table of stages.

Every process appends its spans to ``<data_dir>/spans.jsonl`` (see
:class:`services.common.telemetry.JsonlSpanExporter`). A recording's trace is found through
the spans that carry ``kubescribe.recording_id``; all spans of those traces (including
FastStream's publish/process spans) belong to it. The stage table follows
:data:`StageSpan.ALL`, the paper's latency breakdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from services.common.telemetry import StageSpan

RECORDING_ATTRIBUTE = "kubescribe.recording_id"
STAGES: tuple[str, ...] = StageSpan.ALL
PARTS: tuple[str, ...] = tuple(s for s in STAGES if s != StageSpan.TOTAL)
"""The stages that should add up to ``total``."""


@dataclass(frozen=True)
class SpanRecord:
    """One line of the span file."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    service: str | None = None
    status: str | None = None
    attributes: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def recording_id(self) -> str | None:
        return self.attributes.get(RECORDING_ATTRIBUTE)

    @classmethod
    def from_dict(cls, data: dict) -> SpanRecord:
        return cls(
            name=str(data["name"]),
            trace_id=str(data["trace_id"]),
            span_id=str(data["span_id"]),
            parent_span_id=data.get("parent_span_id"),
            start_ns=int(data["start_ns"]),
            end_ns=int(data.get("end_ns") or data["start_ns"]),
            service=data.get("service"),
            status=data.get("status"),
            attributes=dict(data.get("attributes") or {}),
        )


def load_spans(path: Path) -> list[SpanRecord]:
    """Every well-formed span in the file; a torn or foreign line is skipped, not fatal."""
    spans: list[SpanRecord] = []
    if not Path(path).exists():
        return spans
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                spans.append(SpanRecord.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    return spans


def spans_by_recording(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """recording id → every span of the trace(s) its tagged spans belong to, by start time."""
    spans = list(spans)
    traces: dict[str, set[str]] = {}
    for span in spans:
        if span.recording_id:
            traces.setdefault(span.recording_id, set()).add(span.trace_id)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    result = {}
    for recording_id, trace_ids in traces.items():
        found = [s for t in trace_ids for s in by_trace.get(t, ())]
        result[recording_id] = sorted(found, key=lambda s: (s.start_ns, s.end_ns))
    return result


def spans_for_recording(spans: Iterable[SpanRecord], recording_id: str) -> list[SpanRecord]:
    return spans_by_recording(spans).get(recording_id, [])


@dataclass(frozen=True)
class StageRow:
    """One stage of one recording: several spans of a stage (map-reduce requests) are merged."""

    stage: str
    start_ns: int
    end_ns: int
    duration_s: float
    """Sum of the spans' own durations (not end - start, which would count the gaps)."""
    count: int
    service: str | None

    def offset_s(self, origin_ns: int) -> float:
        return (self.start_ns - origin_ns) / 1e9


def stage_rows(spans: Sequence[SpanRecord], recording_id: str | None = None) -> list[StageRow]:
    """The stage spans in pipeline order; spans of another recording in the same trace are ignored."""
    rows = []
    for stage in STAGES:
        matching = [
            s for s in spans if s.name == stage and (recording_id is None or s.recording_id in (None, recording_id))
        ]
        if not matching:
            continue
        rows.append(
            StageRow(
                stage=stage,
                start_ns=min(s.start_ns for s in matching),
                end_ns=max(s.end_ns for s in matching),
                duration_s=sum(s.duration_s for s in matching),
                count=len(matching),
                service=matching[0].service,
            )
        )
    return rows


def missing_stages(rows: Sequence[StageRow]) -> list[str]:
    present = {row.stage for row in rows}
    return [stage for stage in StageSpan.REQUIRED if stage not in present]


@dataclass(frozen=True)
class TraceCheck:
    """Is one recording's trace a single connected tree?"""

    trace_ids: tuple[str, ...]
    roots: tuple[str, ...]
    """Names of spans whose parent is absent from the file (one expected: the first)."""

    @property
    def connected(self) -> bool:
        return len(self.trace_ids) == 1 and len(self.roots) == 1


def check_trace(spans: Sequence[SpanRecord]) -> TraceCheck:
    ids = {s.span_id for s in spans}
    roots = tuple(s.name for s in spans if not s.parent_span_id or s.parent_span_id not in ids)
    return TraceCheck(trace_ids=tuple(sorted({s.trace_id for s in spans})), roots=roots)


def stage_sum(rows: Sequence[StageRow]) -> tuple[float, float | None]:
    """(sum of the stage durations, the ``total`` span's duration or None)."""
    parts = sum(row.duration_s for row in rows if row.stage in PARTS)
    total = next((row.duration_s for row in rows if row.stage == StageSpan.TOTAL), None)
    return parts, total


def _clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]


def render_stage_table(rows: Sequence[StageRow], *, title: str | None = None) -> Table:
    """Stage | start (UTC) | +offset | duration | service: what ``kubescribe trace`` prints."""
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("start (UTC)")
    table.add_column("offset", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("service")
    if not rows:
        return table
    origin = min(row.start_ns for row in rows)
    for row in rows:
        label = row.stage if row.count == 1 else f"{row.stage} ×{row.count}"
        style = "bold" if row.stage == StageSpan.TOTAL else None
        table.add_row(
            label,
            _clock(row.start_ns),
            f"+{row.offset_s(origin):.3f}s",
            f"{row.duration_s:.3f}s",
            row.service or "",
            style=style,
        )
    missing = missing_stages(rows)
    if missing:
        table.caption = f"no span yet for: {', '.join(missing)}"
    return table
