"""Reports: the paper's numbers from one or more results files, as Markdown, JSON and PNG plots.

Job times come from the recordings' own timestamps (the ``recordings`` KV, copied into the
results), not from the load generator's clock, so a report says what the system recorded:

- job completion time (JCT): ``received`` → the terminal stage (``summarized``, or
  ``transcribed`` for a transcription-only run); makespan: first ``received`` → last terminal;
- the per-stage breakdown splits each JCT at the stage timestamps that exist, in pipeline order
  (queue wait → admission wait → transcription → summarization queue → summarization); a missing
  timestamp folds its segment into the next one, so the segments always add up to the JCT;
- TTFT from the summarizer's metrics (replay) or the client's clock (``llm``).

With two or more runs, the first is the baseline and the others get deltas against it: Kueue
off → on, DAS off → on, random routing → gateway. The plots are drawn by :mod:`loadgen.plots`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.results import ItemResult, LlmResult, Run

BOUNDARIES = ("received", "dispatched", "running", "transcribed", "summarizing", "summarized")
SEGMENTS = ("queue_wait", "admission_wait", "transcription", "summarization_queue", "summarization")
"""``SEGMENTS[i]`` spans ``BOUNDARIES[i]`` → ``BOUNDARIES[i + 1]``."""
SEGMENT_COLORS = ("#9ecae1", "#fdae6b", "#3182bd", "#c7e9c0", "#31a354")


def percentile(values: Sequence[float], q: float) -> float:
    """The project's one percentile: numpy's linear interpolation, ``q`` in 0..100; NaN when empty.

    Every report, bench and replay check uses this one, so a p99 means the same everywhere.
    """
    if not len(values):
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=float), q))


def describe(values: Sequence[float]) -> dict[str, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def end_stage(item: ItemResult) -> str | None:
    if item.outcome == "summarized":
        return "summarized"
    if item.outcome == "transcribed":
        return "transcribed"
    return None


def seconds_between(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def stamps(item: ItemResult) -> dict[str, datetime]:
    """The item's stage timestamps; a recording published without a ``received`` time (a direct
    event from another client) starts at ``queued``, when the dispatcher first saw it."""
    found = dict(item.timestamps)
    if "received" not in found and "queued" in found:
        found["received"] = found["queued"]
    return found


def job_completion_time(item: ItemResult) -> float | None:
    """Seconds from ``received`` to the terminal stage, from the recording's own timestamps."""
    end, found = end_stage(item), stamps(item)
    if end is None or "received" not in found or end not in found:
        return None
    return seconds_between(found["received"], found[end])


def stage_segments(item: ItemResult) -> dict[str, float]:
    """Per-segment seconds of one completed item; they add up to its JCT."""
    end, found = end_stage(item), stamps(item)
    if end is None or "received" not in found:
        return {}
    last_index = BOUNDARIES.index(end)
    present = [(i, b) for i, b in enumerate(BOUNDARIES[: last_index + 1]) if b in found]
    segments: dict[str, float] = {}
    for (_, previous), (index, boundary) in itertools.pairwise(present):
        segments[SEGMENTS[index - 1]] = seconds_between(found[previous], found[boundary])
    return segments


def summarize_replay(run: Run) -> dict[str, Any]:
    items = run.items
    outcomes: dict[str, int] = {}
    for item in items:
        outcomes[item.outcome] = outcomes.get(item.outcome, 0) + 1
    completed = [i for i in items if job_completion_time(i) is not None]
    jct = [job_completion_time(i) for i in completed]
    starts = [stamps(i)["received"] for i in completed]
    ends = [stamps(i)[end_stage(i)] for i in completed]  # type: ignore[index]
    makespan = seconds_between(min(starts), max(ends)) if completed else math.nan
    segments = [stage_segments(i) for i in completed]
    breakdown = {name: describe([s[name] for s in segments if name in s]) for name in SEGMENTS}
    stage_mean = {
        name: sum(s.get(name, 0.0) for s in segments) / len(segments) if segments else 0.0 for name in SEGMENTS
    }
    queue = [s["queue_wait"] for s in segments if "queue_wait" in s]
    admission = [s["admission_wait"] for s in segments if "admission_wait" in s]
    ttft = [i.metrics["ttft_s"] for i in completed if "ttft_s" in i.metrics]
    audio_s = sum(i.audio_s or 0.0 for i in completed)
    failures = [
        {"id": i.id, "recording_id": i.recording_id, "outcome": i.outcome, "stage": i.error_stage, "error": i.error}
        for i in items
        if i.outcome in ("failed", "rejected", "timeout")
    ]
    return {
        "name": run.name,
        "mode": "replay",
        "target": run.header.target,
        "started_at": run.header.started_at.isoformat(),
        "stopped": run.footer.stopped if run.footer else "unknown",
        "items": len(items),
        "outcomes": outcomes,
        "completed": len(completed),
        "failed": len(failures),
        "makespan_s": makespan,
        "jct_s": describe(jct),
        "queue_wait_s": describe(queue),
        "admission_wait_s": describe(admission),
        "ttft_s": describe(ttft),
        "stages_s": breakdown,
        "stage_mean_s": stage_mean,
        "throughput_per_s": len(completed) / makespan if completed and makespan > 0 else math.nan,
        "audio_s_per_s": audio_s / makespan if completed and makespan > 0 else math.nan,
        "lag_s": describe([i.lag_s for i in items if i.lag_s is not None]),
        "failures": failures,
    }


def summarize_llm(run: Run) -> dict[str, Any]:
    levels: dict[int, list[LlmResult]] = {}
    for result in run.llm:
        levels.setdefault(result.concurrency, []).append(result)
    per_level = {}
    for concurrency, results in sorted(levels.items()):
        ok = [r for r in results if r.error is None]
        wall = (
            max(r.start_s + (r.latency_s or 0) for r in results) - min(r.start_s for r in results) if results else 0.0
        )
        per_level[str(concurrency)] = {
            "requests": len(results),
            "errors": len(results) - len(ok),
            "ttft_s": describe([r.ttft_s for r in ok if r.ttft_s is not None]),
            "itl_s": describe([r.itl_s for r in ok if r.itl_s is not None]),
            "latency_s": describe([r.latency_s for r in ok if r.latency_s is not None]),
            "requests_per_s": len(ok) / wall if wall > 0 else math.nan,
            "output_tokens_per_s": sum(r.tokens_out for r in ok) / wall if wall > 0 else math.nan,
        }
    ok = [r for r in run.llm if r.error is None]
    return {
        "name": run.name,
        "mode": "llm",
        "target": run.header.target,
        "started_at": run.header.started_at.isoformat(),
        "requests": len(run.llm),
        "errors": len(run.llm) - len(ok),
        "ttft_s": describe([r.ttft_s for r in ok if r.ttft_s is not None]),
        "itl_s": describe([r.itl_s for r in ok if r.itl_s is not None]),
        "concurrency": per_level,
        "failures": [{"id": r.id, "error": r.error} for r in run.llm if r.error][:50],
    }


def summarize(run: Run) -> dict[str, Any]:
    return summarize_llm(run) if run.header.mode == "llm" else summarize_replay(run)


KEY_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "replay": (
        ("makespan_s", "makespan (s)"),
        ("jct_s.mean", "JCT mean (s)"),
        ("jct_s.p50", "JCT p50 (s)"),
        ("jct_s.p95", "JCT p95 (s)"),
        ("jct_s.p99", "JCT p99 (s)"),
        ("queue_wait_s.mean", "queue wait mean (s)"),
        ("admission_wait_s.mean", "admission wait mean (s)"),
        ("ttft_s.p50", "TTFT p50 (s)"),
        ("ttft_s.p99", "TTFT p99 (s)"),
        ("throughput_per_s", "recordings/s"),
        ("failed", "failures"),
    ),
    "llm": (
        ("ttft_s.mean", "TTFT mean (s)"),
        ("ttft_s.p50", "TTFT p50 (s)"),
        ("ttft_s.p90", "TTFT p90 (s)"),
        ("ttft_s.p99", "TTFT p99 (s)"),
        ("itl_s.mean", "ITL mean (s)"),
        ("errors", "errors"),
    ),
}


def lookup(summary: dict[str, Any], dotted: str) -> float | int:
    value: Any = summary
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return math.nan
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return value


def compare(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of key metrics, each run's value and its delta (%) against the first run."""
    if len(summaries) < 2:
        return []
    modes = {s["mode"] for s in summaries}
    metrics = KEY_METRICS["llm" if modes == {"llm"} else "replay"]
    rows = []
    for key, label in metrics:
        values = [lookup(s, key) for s in summaries]
        base = values[0]
        deltas = [
            (v - base) / base * 100.0 if base and not math.isnan(base) and not math.isnan(v) else math.nan
            for v in values[1:]
        ]
        rows.append({"metric": key, "label": label, "values": values, "delta_pct": deltas})
    return rows


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value)}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_markdown(summaries: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], plots: Sequence[Path]) -> str:
    lines = ["# kubescribe load report", ""]
    lines += ["| run | mode | target | items | completed/ok | failed | started |", "|---|---|---|---|---|---|---|"]
    for s in summaries:
        if s["mode"] == "replay":
            lines.append(
                f"| {s['name']} | replay | {s['target']} | {s['items']} | {s['completed']} | {s['failed']} "
                f"| {s['started_at']} |"
            )
        else:
            lines.append(
                f"| {s['name']} | llm | {s['target']} | {s['requests']} | {s['requests'] - s['errors']} "
                f"| {s['errors']} | {s['started_at']} |"
            )
    if rows:
        names = [s["name"] for s in summaries]
        lines += ["", f"## Comparison (baseline: {names[0]})", ""]
        head = "| metric | " + " | ".join(names) + " | " + " | ".join(f"Δ {n}" for n in names[1:]) + " |"
        lines += [head, "|---" * (1 + len(names) + len(names) - 1) + "|"]
        for row in rows:
            values = " | ".join(_fmt(v) for v in row["values"])
            deltas = " | ".join("–" if math.isnan(d) else f"{d:+.1f} %" for d in row["delta_pct"])
            lines.append(f"| {row['label']} | {values} | {deltas} |")
    for s in summaries:
        lines += ["", f"## {s['name']}", ""]
        if s["mode"] == "replay":
            lines += [
                f"- makespan: {_fmt(s['makespan_s'])} s; throughput {_fmt(s['throughput_per_s'])} recordings/s, "
                f"{_fmt(s['audio_s_per_s'], 1)} s of audio per second",
                f"- outcomes: {', '.join(f'{k} {v}' for k, v in sorted(s['outcomes'].items()))}; "
                f"stopped: {s['stopped']}",
                f"- send lag p50 {_fmt(s['lag_s']['p50'] * 1000, 1)} ms, p99 {_fmt(s['lag_s']['p99'] * 1000, 1)} ms",
                "",
                "| seconds | count | mean | p50 | p95 | p99 | max |",
                "|---|---|---|---|---|---|---|",
            ]
            for label, d in [
                ("job completion time", s["jct_s"]),
                ("queue wait", s["queue_wait_s"]),
                ("admission wait", s["admission_wait_s"]),
                ("TTFT", s["ttft_s"]),
                *((f"stage: {name}", s["stages_s"][name]) for name in SEGMENTS),
            ]:
                lines.append(
                    f"| {label} | {d['count']} | {_fmt(d['mean'])} | {_fmt(d['p50'])} | {_fmt(d['p95'])} "
                    f"| {_fmt(d['p99'])} | {_fmt(d['max'])} |"
                )
        else:
            lines += [
                "| concurrency | requests | errors | TTFT mean | TTFT p50 | TTFT p99 | ITL mean | req/s | out tok/s |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for level, d in s["concurrency"].items():
                lines.append(
                    f"| {level} | {d['requests']} | {d['errors']} | {_fmt(d['ttft_s']['mean'])} "
                    f"| {_fmt(d['ttft_s']['p50'])} | {_fmt(d['ttft_s']['p99'])} | {_fmt(d['itl_s']['mean'], 4)} "
                    f"| {_fmt(d['requests_per_s'], 2)} | {_fmt(d['output_tokens_per_s'], 1)} |"
                )
        if s["failures"]:
            lines += ["", "Failures:", ""]
            lines += [
                f"- `{f['id']}` {f.get('outcome', 'error')}"
                f"{' at ' + f['stage'] if f.get('stage') else ''}: {f.get('error') or 'no reason recorded'}"
                for f in s["failures"][:20]
            ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_report(runs: Sequence[Run], out_dir: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the PNGs into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(run) for run in runs]
    rows = compare(summaries)
    from loadgen.plots import write_plots  # matplotlib only when plots are asked for

    images = write_plots(runs, out_dir) if plots else []
    markdown = out_dir / "report.md"
    markdown.write_text(render_markdown(summaries, rows, images))
    document = out_dir / "report.json"
    document.write_text(
        json.dumps(_jsonable({"runs": summaries, "comparison": rows}), indent=2, sort_keys=True, default=str) + "\n"
    )
    return {"markdown": markdown, "json": document, **{p.stem: p for p in images}}
