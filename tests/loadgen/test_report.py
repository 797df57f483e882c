"""Reports: numbers computed from the recordings' timestamps, comparisons, and plots with data."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from matplotlib import image

from loadgen.report import SEGMENTS, job_completion_time, stage_segments, summarize, write_report
from loadgen.results import ItemResult, LlmResult, Run, RunFooter, RunHeader, read_run, write_run

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_replay(name: str, *, jobs: int = 20, slowdown: float = 1.0, seed: int = 0) -> Run:
    """A replay whose recordings went through every stage, with known durations."""
    rng = random.Random(seed)
    items = []
    for i in range(jobs):
        at = T0 + timedelta(seconds=i * 0.5)
        stamps = {"received": at}
        for stage in ("queued", "dispatched", "admitted", "running", "transcribed", "summarizing", "summarized"):
            at += timedelta(seconds=rng.uniform(0.1, 2.0) * slowdown)
            stamps[stage] = at
        items.append(
            ItemResult(
                id=f"r{i:03d}",
                recording_id=f"01JDZ8W3V0R4N8M0Q2K5T7Y{i:03d}",
                scheduled_s=i * 0.5,
                sent_s=i * 0.5 + 0.001,
                lag_s=0.001,
                accepted_s=i * 0.5 + 0.01,
                completed_s=i * 0.5 + 5,
                outcome="summarized",
                timestamps=stamps,
                metrics={"ttft_s": rng.uniform(0.1, 0.3) * slowdown},
                audio_s=10.0,
            )
        )
    items.append(
        ItemResult(
            id="bad",
            recording_id="01JDZ8W3V0R4N8M0Q2K5T7YBAD",
            scheduled_s=0,
            outcome="failed",
            error="audio is silence",
            error_stage="transcribe",
            timestamps={"received": T0, "failed": T0 + timedelta(seconds=3)},
        )
    )
    header = RunHeader(run_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AB", name=name, mode="replay", target="test", items=len(items))
    return Run(header=header, items=items, footer=RunFooter(duration_s=30))


def synthetic_llm(name: str, base_ttft: float) -> Run:
    rng = random.Random(1)
    results = [
        LlmResult(
            id=f"c{c}-{i}",
            concurrency=c,
            start_s=i * 0.1,
            ttft_s=base_ttft * (1 + c / 10) * rng.uniform(0.9, 1.3),
            itl_s=0.02,
            latency_s=1.0,
            tokens_out=50,
            status=200,
        )
        for c in (5, 10)
        for i in range(30)
    ]
    header = RunHeader(run_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AC", name=name, mode="llm", target="sim", items=60)
    return Run(header=header, llm=results, footer=RunFooter(duration_s=10))


def test_numbers_come_from_the_recordings_timestamps():
    run = synthetic_replay("kueue-on")
    summary = summarize(run)
    done = [i for i in run.items if i.outcome == "summarized"]
    jct = np.array([(i.timestamps["summarized"] - i.timestamps["received"]).total_seconds() for i in done])
    assert summary["completed"] == 20 and summary["failed"] == 1
    assert summary["jct_s"]["mean"] == pytest.approx(jct.mean())
    for q in (50, 95, 99):
        assert summary["jct_s"][f"p{q}"] == pytest.approx(np.percentile(jct, q))
    makespan = (max(i.timestamps["summarized"] for i in done) - T0).total_seconds()
    assert summary["makespan_s"] == pytest.approx(makespan)
    assert summary["throughput_per_s"] == pytest.approx(20 / makespan)
    queue = [(i.timestamps["dispatched"] - i.timestamps["received"]).total_seconds() for i in done]
    admission = [(i.timestamps["running"] - i.timestamps["dispatched"]).total_seconds() for i in done]
    assert summary["queue_wait_s"]["mean"] == pytest.approx(np.mean(queue))
    assert summary["admission_wait_s"]["p99"] == pytest.approx(np.percentile(admission, 99))
    assert summary["ttft_s"]["p50"] == pytest.approx(np.percentile([i.metrics["ttft_s"] for i in done], 50))
    assert summary["failures"][0]["error"] == "audio is silence"
    for item in done:
        assert sum(stage_segments(item).values()) == pytest.approx(job_completion_time(item))


def test_missing_stage_timestamps_fold_into_the_next_segment():
    item = ItemResult(
        id="x",
        scheduled_s=0,
        outcome="summarized",
        timestamps={
            "received": T0,
            "dispatched": T0 + timedelta(seconds=1),
            "transcribed": T0 + timedelta(seconds=4),
            "summarized": T0 + timedelta(seconds=6),
        },
    )
    assert stage_segments(item) == {"queue_wait": 1.0, "transcription": 3.0, "summarization": 2.0}
    assert job_completion_time(item) == 6.0


def test_side_by_side_deltas_and_plots(tmp_path):
    off = synthetic_replay("kueue-off", slowdown=1.5, seed=1)
    on = synthetic_replay("kueue-on", seed=1)
    paths = [write_run(tmp_path / f"{run.name}.jsonl", run) for run in (off, on)]
    runs = [read_run(p) for p in paths]
    assert runs[1].items == on.items
    written = write_report(runs, tmp_path / "report")

    report = json.loads(written["json"].read_text())
    makespan_row = next(r for r in report["comparison"] if r["metric"] == "makespan_s")
    base, new = makespan_row["values"]
    assert makespan_row["delta_pct"][0] == pytest.approx((new - base) / base * 100)
    assert makespan_row["delta_pct"][0] < 0, "the faster run shows a negative delta"
    markdown = written["markdown"].read_text()
    assert "Comparison (baseline: kueue-off)" in markdown and "Δ kueue-on" in markdown
    assert "| makespan (s) |" in markdown and "audio is silence" in markdown

    for name in ("jct_cdf", "ttft_cdf", "timeline", "stages"):
        assert_plot_has_data(written[name])
    assert set(report["runs"][0]["stage_mean_s"]) == set(SEGMENTS)


def test_llm_runs_side_by_side(tmp_path):
    written = write_report([synthetic_llm("random", 0.4), synthetic_llm("gateway", 0.1)], tmp_path)
    report = json.loads(written["json"].read_text())
    row = next(r for r in report["comparison"] if r["metric"] == "ttft_s.p99")
    assert row["delta_pct"][0] == pytest.approx(-75, abs=10)
    assert set(report["runs"][0]["concurrency"]) == {"5", "10"}
    assert "| concurrency |" in written["markdown"].read_text()
    assert_plot_has_data(written["ttft_cdf"])
    assert_plot_has_data(written["ttft_by_concurrency"])
    assert "jct_cdf" not in written


def test_empty_run_reports_without_crashing(tmp_path):
    header = RunHeader(run_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AD", name="empty", mode="replay", target="t", items=1)
    run = Run(header=header, items=[ItemResult(id="a", scheduled_s=0, outcome="timeout")])
    written = write_report([run], tmp_path)
    report = json.loads(written["json"].read_text(), parse_constant=_reject_non_json_number)
    assert report["runs"][0]["makespan_s"] is None and report["runs"][0]["failed"] == 1


def _reject_non_json_number(token: str) -> float:
    """``json`` writes NaN/Infinity (no statistic of an empty run) as tokens other parsers reject."""
    raise AssertionError(f"report.json holds {token}, which is not JSON: write null for a missing statistic")


def assert_plot_has_data(path):
    """A PNG that is more than a blank canvas: big enough, and with real pixel variation."""
    assert path.is_file() and path.stat().st_size > 15_000, f"{path} is too small to hold a plot"
    pixels = image.imread(path)[..., :3]
    assert pixels.std() > 0.05, f"{path} looks blank"
    # Colored plot elements (not only black text on white): some pixels are saturated.
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert (saturation > 0.3).mean() > 0.005, f"{path} has no colored data"
