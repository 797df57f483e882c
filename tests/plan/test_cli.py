"""``kubescribe plan`` and ``kubescribe loadgen paper`` through the real CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import _register_commands, app

_register_commands()
runner = CliRunner()


def test_paper_kueue_preset_writes_tables_json_records_and_plots(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["plan", "--preset", "paper-kueue", "--rounds", "2", "--no-sensitivity", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "The paper's comparison" in result.output and "What kubescribe adds" in result.output
    outcome = json.loads((tmp_path / "plan.json").read_text())
    paper = next(c for c in outcome["comparisons"] if c["arm"] == "kueue")
    assert paper["verdict"] in ("consistent with the paper within the interval", "smaller", "larger")
    assert all(entry["source"] for entry in outcome["calibration"].values())
    with gzip.open(tmp_path / "records.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    assert {r["arm"] for r in rows} >= {"kube-scheduler", "kueue"}
    assert len([r for r in rows if r["record"] == "recording" and r["arm"] == "kueue"]) == 2 * 32
    assert (tmp_path / "jct-cdf.png").stat().st_size > 1000
    assert (tmp_path / "gantt-kueue.png").stat().st_size > 1000


def test_a_sweep_reports_one_row_per_value(tmp_path: Path) -> None:
    args = ["plan", "--preset", "paper-das", "--rounds", "2", "--sweep", "slice_alpha=0.25,1", "-o", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "plan.json").read_text())["sweep"]
    assert [(r["key"], r["value"]) for r in rows] == [("slice_alpha", 0.25), ("slice_alpha", 1.0)]
    assert rows[0]["deltas"]["das"]["mean"] != rows[1]["deltas"]["das"]["mean"]


def test_spec_and_trace_files(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text("name: lab\ngpus: [{type: H100-80GB, count: 2}]\nkubescribe: {enabled: true}\n")
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(
        json.dumps({"id": f"t{i}", "offset_s": i, "audio": {"kind": "tone", "duration_s": 30}, "model": "small"}) + "\n"
        for i in range(6)
    ))  # fmt: skip
    result = runner.invoke(
        app, ["plan", "--spec", str(spec), "--trace", str(trace), "--rounds", "1", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "plan.json").read_text())["arms"]["spec"]["summary"]["jobs"]["mean"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "paper-das", "--sweep", "nokey=1"], "calibration has no 'nokey'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    import sys

    from services.cli import main

    sys.argv = ["kubescribe", "plan", *args, "--rounds", "1", "-o", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1


def test_a_spec_with_an_unknown_profile_names_it(tmp_path: Path, capsys) -> None:
    import sys

    from services.cli import main

    spec = tmp_path / "bad.yaml"
    spec.write_text("gpus: [{type: A100-40GB, count: 1}]\nworkload: {das: true, profiles: {medium: mig-9g.99gb}}\n")
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"id": "a", "offset_s": 0, "audio": {"kind": "tone", "duration_s": 5}}) + "\n")
    sys.argv = ["kubescribe", "plan", "--spec", str(spec), "--trace", str(trace)]
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert "mig-9g.99gb" in capsys.readouterr().err


def test_loadgen_paper_runs_and_re_renders(tmp_path: Path) -> None:
    result = runner.invoke(app, ["loadgen", "paper", "kueue", "--rounds", "2", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "kueue" / "result.json").read_text())
    assert saved["scale"] == "simulated at cluster scale"
    assert saved["environment"]["start"]["cores"] >= 1
    summary = (tmp_path / "summary.md").read_text()
    assert "kueue: kueue vs kube-scheduler" in summary and "beaten" not in summary
    (tmp_path / "summary.md").unlink()
    again = runner.invoke(app, ["loadgen", "paper", "--render-only", "-o", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "summary.md").read_text().count("kueue vs kube-scheduler") >= 1
