"""``kubescribe loadgen``: commands, exit codes (0 ok, 1 runtime failure, 2 usage) and one-line errors."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from loadgen.cli import register
from loadgen.results import write_run
from loadgen.trace import read_trace
from tests.loadgen.test_open_loop import serve
from tests.loadgen.test_report import synthetic_replay

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()
    register(root)
    return root


def test_make_writes_a_trace(app, tmp_path):
    out = tmp_path / "kueue.jsonl"
    result = runner.invoke(app, ["loadgen", "make", "--preset", "kueue", "--models", "tiny.en,tiny.en", "-o", str(out)])
    assert result.exit_code == 0, result.output
    items = read_trace(out)
    assert len(items) == 32 and {i.model for i in items} == {"tiny.en"}

    result = runner.invoke(
        app, ["loadgen", "make", "-n", "5", "--arrivals", "constant", "--rate", "2", "--audio", "tone"]
    )
    assert result.exit_code == 0
    assert [json.loads(line)["offset_s"] for line in result.stdout.splitlines()] == [0.0, 0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize(
    "args",
    [
        ["make", "--preset", "nope"],
        ["make", "--arrivals", "sometimes"],
        ["make", "--tenants", "Not_A_Label"],
        ["make", "--count", "0"],
        ["replay", "trace.jsonl"],
        ["replay", "trace.jsonl", "--url", "http://127.0.0.1:1", "--until", "never"],
        ["llm", "--concurrency", "five"],
    ],
)
def test_usage_errors_exit_2(app, args, monkeypatch):
    monkeypatch.delenv("KUBESCRIBE_NATS_URL", raising=False)
    monkeypatch.delenv("KUBESCRIBE_INGEST_URL", raising=False)
    result = runner.invoke(app, ["loadgen", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_replay_without_collection_against_an_http_target(app, tmp_path):
    trace = tmp_path / "t.jsonl"
    assert runner.invoke(
        app,
        ["loadgen", "make", "-n", "4", "--arrivals", "burst", "--audio", "tone", "--duration", "0.2", "-o", str(trace)],
    )
    out = tmp_path / "r.jsonl"
    for server in serve(delay=0.0):
        result = runner.invoke(
            app,
            ["loadgen", "replay", str(trace), "--url", server.url, "--no-collect", "-o", str(out)],
            env={"KUBESCRIBE_LOADGEN_CACHE_DIR": str(tmp_path / "cache")},
        )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["record"] for line in lines] == ["run", "item", "item", "item", "item", "end"]
    assert {line["outcome"] for line in lines[1:-1]} == {"accepted"}


def test_replay_exits_1_when_items_are_refused(app, tmp_path):
    trace = tmp_path / "t.jsonl"
    runner.invoke(app, ["loadgen", "make", "-n", "2", "--audio", "tone", "--duration", "0.2", "-o", str(trace)])
    for server in serve(delay=0.0, status=503):
        result = runner.invoke(
            app,
            ["loadgen", "replay", str(trace), "--url", server.url, "--no-collect", "-o", str(tmp_path / "r.jsonl")],
            env={"KUBESCRIBE_LOADGEN_CACHE_DIR": str(tmp_path / "cache")},
        )
    assert result.exit_code == 1
    assert "503" in result.output and "Traceback" not in result.output


def test_unreachable_nats_is_one_line_and_exit_1(app, tmp_path):
    trace = tmp_path / "t.jsonl"
    runner.invoke(app, ["loadgen", "make", "-n", "1", "--audio", "tone", "-o", str(trace)])
    result = runner.invoke(
        app,
        ["loadgen", "replay", str(trace), "--direct", "--nats", "nats://127.0.0.1:1"],
        env={"KUBESCRIBE_LOADGEN_CACHE_DIR": str(tmp_path / "cache"), "KUBESCRIBE_NATS_CONNECT_TIMEOUT": "0.5"},
    )
    assert result.exit_code == 1
    assert "ConfigurationError" in result.output and "Traceback" not in result.output


def test_report_command(app, tmp_path):
    runs = [write_run(tmp_path / f"{n}.jsonl", synthetic_replay(n, slowdown=s)) for n, s in (("off", 2), ("on", 1))]
    out = tmp_path / "report"
    result = runner.invoke(app, ["loadgen", "report", *map(str, runs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Comparison (baseline: off)" in result.stdout
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.json", "jct_cdf.png", "timeline.png"}

    missing = runner.invoke(app, ["loadgen", "report", str(tmp_path / "missing.jsonl")])
    assert missing.exit_code == 1 and "cannot read results" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record": "item", "id": "x", "scheduled_s": 0}\n')
    result = runner.invoke(app, ["loadgen", "report", str(bad)])
    assert result.exit_code == 1 and "must start with a 'run' header" in result.output


def test_llm_command_against_the_simulator(app, tmp_path):
    sim_llm = pytest.importorskip("services.runtime.sim")
    out = tmp_path / "llm.jsonl"
    with sim_llm.SimLlmServer(sim_llm.SimConfig(ttft=0.02, itl=0.001)) as sim:
        result = runner.invoke(
            app, ["loadgen", "llm", "--url", sim.base_url, "-c", "1,3", "-n", "3", "--max-tokens", "4", "-o", str(out)]
        )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(line["record"] == "llm" for line in lines) == 6
