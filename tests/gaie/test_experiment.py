"""The GAIE experiment's parts: the workload's shape, the statistics and verdicts, the CLI end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loadgen.gaie import GaieOptions
from loadgen.gaie_stats import interval, summarize, verdict
from loadgen.gaie_workload import INSTRUCTION, transcript_prompts
from services.runtime.sim.calibration import CalibrationError, calibration, sources
from services.runtime.sim.engine import tokenize


def _app() -> typer.Typer:
    from loadgen.cli import register

    root = typer.Typer()
    register(root)
    return root


def test_workload_has_the_papers_shape() -> None:
    prompts = transcript_prompts()
    assert len(prompts) == 16 and len({p.prompt for p in prompts}) == 16
    sizes = [len(tokenize(p.prompt or "")) for p in prompts]
    assert all(8000 <= n <= 9000 for n in sizes), sizes
    assert all((p.prompt or "").startswith(INSTRUCTION) and p.max_tokens == 512 for p in prompts)
    assert transcript_prompts()[3].prompt == prompts[3].prompt, "deterministic: no download, no drift"


def test_calibration_names_a_source_for_every_number() -> None:
    profile = sources()["values"]
    assert profile and all(entry["source"] for entry in profile.values())
    config = calibration(kv_cache_blocks=123)
    assert config.kv_cache_blocks == 123 and config.max_num_seqs == 256 and config.prefill_serial
    with pytest.raises(CalibrationError, match="not a simulator setting"):
        calibration(kv_blocks=1)
    with pytest.raises(CalibrationError, match="unknown calibration"):
        calibration("h100-nonexistent")


def test_intervals_and_verdicts() -> None:
    assert interval([1.0])["low"] == interval([1.0])["high"] == 1.0
    wide = interval([-0.95, -0.85, -0.92, -0.88, -0.90])
    assert wide["low"] < -0.9 < wide["high"]
    assert verdict(wide) == "consistent with the paper within the interval"
    assert verdict({"low": -0.5, "high": -0.3}) == "smaller"
    assert verdict({"low": -0.99, "high": -0.95}) == "larger"


def test_summary_pairs_rounds_against_random() -> None:
    records = [
        {"arm": arm, "round": n, "concurrency": 5, "phase": "measure", "ttft_s": value, "error": None}
        for n in range(3)
        for arm, base in (("random", 2.0), ("picker", 0.5))
        for value in (base, base * 1.1)
    ]
    summary = summarize(records, GaieOptions(rounds=3))
    change = summary["p99_change_vs_random"]["picker"]["5"]
    assert change["mean"] == pytest.approx(-0.75) and change["n"] == 3
    assert summary["p99_change_vs_random"]["picker"]["verdict"] == "smaller"


def test_options_refuse_nonsense() -> None:
    from loadgen.errors import TargetError

    with pytest.raises(TargetError, match="unknown arm"):
        GaieOptions(arms=("random", "oracle")).validate()
    with pytest.raises(TargetError, match="unknown client"):
        GaieOptions(client="wrk").validate()


@pytest.mark.slow
def test_cli_runs_the_experiment_through_envoy(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(),
        ["loadgen", "gaie", "--scale", "0.02", "--rounds", "2", "--arms", "random,picker", "-c", "5",
         "--set", "kv_cache_blocks=6000", "-o", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["ttft"]) == {"random", "picker"} and "verdict" in summary["p99_change_vs_random"]["picker"]
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["cores"] and env["commit"] and env["sim_config"]["kv_cache_blocks"] == 6000
    with gzip.open(tmp_path / "records.jsonl.gz", "rt") as handle:
        records = [json.loads(line) for line in handle]
    measured = [r for r in records if r["phase"] == "measure"]
    assert len(measured) == 2 * 2 * 5 and not [r for r in measured if r["error"]]
    assert (tmp_path / "ttft_p99.png").stat().st_size > 1000


def test_cli_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(_app(), ["loadgen", "gaie", "--set", "nokey"])
    assert result.exit_code == 2 and "key=value" in result.output
