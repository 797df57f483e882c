"""Report plots: CDFs of JCT and TTFT, a Gantt-style timeline per replay, per-stage stacked bars.

Apart from :mod:`loadgen.report` so that the numbers can be computed (and tested) without
matplotlib; drawn with matplotlib's Agg backend (no display), imported only when plotting.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from loadgen.report import (
    BOUNDARIES,
    SEGMENT_COLORS,
    SEGMENTS,
    job_completion_time,
    seconds_between,
    stage_segments,
    stamps,
    summarize_llm,
    summarize_replay,
)
from loadgen.results import Run


def _cdf(ax, values: Sequence[float], label: str) -> None:
    data = sorted(values)
    if data:
        ys = [(i + 1) / len(data) for i in range(len(data))]
        ax.step(data, ys, where="post", label=f"{label} (n={len(data)})")


def write_plots(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """CDFs of JCT and TTFT, a Gantt-style timeline per replay, per-stage stacked bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    replays = [r for r in runs if r.header.mode == "replay"]

    def save(fig, name: str) -> None:
        path = out_dir / name
        if not fig.get_layout_engine():
            fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if any(job_completion_time(i) is not None for r in replays for i in r.items):
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in replays:
            _cdf(ax, [t for i in run.items if (t := job_completion_time(i)) is not None], run.name)
        ax.set(xlabel="job completion time (s)", ylabel="fraction of jobs", title="Job completion time CDF")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "jct_cdf.png")

    ttft_series = []
    for run in runs:
        if run.header.mode == "llm":
            ttft_series.append((run.name, [r.ttft_s for r in run.llm if r.ttft_s is not None and r.error is None]))
        else:
            ttft_series.append((run.name, [i.metrics["ttft_s"] for i in run.items if "ttft_s" in i.metrics]))
    if any(values for _, values in ttft_series):
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, values in ttft_series:
            _cdf(ax, values, name)
        ax.set(xlabel="time to first token (s)", ylabel="fraction of requests", title="TTFT CDF")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "ttft_cdf.png")

    llm_runs = [r for r in runs if r.header.mode == "llm" and r.llm]
    if llm_runs:
        fig, ax = plt.subplots(figsize=(7, 4))
        for index, run in enumerate(llm_runs):
            levels = summarize_llm(run)["concurrency"]
            xs = [int(k) for k in levels]
            color = f"C{index}"
            ax.plot(xs, [levels[k]["ttft_s"]["p50"] for k in levels], "o-", color=color, label=f"{run.name} p50")
            ax.plot(xs, [levels[k]["ttft_s"]["p99"] for k in levels], "x--", color=color, label=f"{run.name} p99")
        ax.set(xlabel="concurrency", ylabel="TTFT (s)", title="TTFT by concurrency")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "ttft_by_concurrency.png")

    timelines = [r for r in replays if any(stage_segments(i) for i in r.items)]
    if timelines:
        rows = max(len(r.items) for r in timelines)
        fig, axes = plt.subplots(
            len(timelines),
            1,
            figsize=(10, (1.5 + 0.2 * rows) * len(timelines)),
            squeeze=False,
            sharex=True,
            layout="constrained",
        )
        for ax, run in zip(axes[:, 0], timelines, strict=True):
            _gantt(ax, run)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SEGMENT_COLORS]
        fig.legend(handles, SEGMENTS, loc="outside lower center", ncols=len(SEGMENTS), fontsize=8)
        save(fig, "timeline.png")

    if replays and any(summarize_replay(r)["completed"] for r in replays):
        fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(replays) + 3), 4))
        bottoms = [0.0] * len(replays)
        names = [r.name for r in replays]
        means = [summarize_replay(r)["stage_mean_s"] for r in replays]
        for segment, color in zip(SEGMENTS, SEGMENT_COLORS, strict=True):
            heights = [m[segment] for m in means]
            ax.bar(names, heights, bottom=bottoms, color=color, label=segment)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.set(ylabel="mean seconds per recording", title="Per-stage breakdown")
        ax.legend(fontsize=8)
        save(fig, "stages.png")
    return written


def _gantt(ax, run: Run) -> None:
    items = [i for i in run.items if "received" in stamps(i)]
    if not items:
        return
    origin = min(stamps(i)["received"] for i in items)
    items.sort(key=lambda i: stamps(i)["received"])
    for row, item in enumerate(items):
        found = stamps(item)
        present = [b for b in BOUNDARIES if b in found]
        for previous, boundary in itertools.pairwise(present):
            segment = BOUNDARIES.index(boundary) - 1
            start = seconds_between(origin, found[previous])
            width = seconds_between(found[previous], found[boundary])
            ax.barh(row, width, left=start, color=SEGMENT_COLORS[segment], edgecolor="none", height=0.8)
        if "failed" in item.timestamps:
            ax.plot(seconds_between(origin, item.timestamps["failed"]), row, "rx")
    if len(items) <= 64:
        ax.set_yticks(range(len(items)), [i.id for i in items], fontsize=6)
    ax.set(xlabel="seconds since first arrival", ylabel="recording", title=f"Timeline: {run.name}")
    ax.set_ylim(-1, len(items))
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
