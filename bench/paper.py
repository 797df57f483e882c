"""The ICPE'26 paper's three experiments, as local analogues on the embedded stack, in one command.

    kueue  makespan of a burst of 32 (tiny.en): (A) no admission control, 32 slots, one recording
           per job; (B) admission by quota, slots = cores, one recording per job (the paper's
           Kueue); (C) kubescribe's defaults (slots = cores, packed jobs, warm slots).
           Paper: Kueue shortens the makespan by up to 15 %.
    das    mean JCT of Poisson arrivals (tiny.en): (whole) one 2-thread slot owning the machine vs
           (slices) one single-threaded slot per core. Paper: DAS cuts mean JCT by 36 %.
    gaie   tail TTFT over two isolated simulator replicas (max-num-seqs 5, ttft 0.2 s, itl
           0.02 s): random routing vs least-loaded, at concurrencies 5,10,15,20.
           Paper: the gateway cuts tail TTFT by up to 90 % against random routing.

Each configuration runs on a fresh stack (or fresh replicas), one after another, never
overlapping; ratios are against the baseline measured in the same run. The loadgen engines do
the work (make, replay, llm, report); this script only wires stacks and prints tables::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/paper.py                  # all three, ~9 min on 2 cores
    .venv/bin/python bench/paper.py kueue das --repeat 2 --out /tmp/paper

Exit status 0 when every run completed, 1 (one readable line) when any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
EXPERIMENTS = ("kueue", "das", "gaie")


class BenchError(Exception):
    """A run that did not complete: printed as one line, exit 1."""


@dataclass(frozen=True)
class Config:
    """One configuration of an experiment: a label, what it stands for, its environment."""

    name: str
    label: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """The paper's result for one comparison: ``delta_pct`` of ``metric``, ours against it."""

    metric: str
    label: str
    delta_pct: float


PAPER = {
    "kueue": Claim("makespan_s", "makespan", -15.0),
    "das": Claim("jct_s.mean", "mean JCT", -36.0),
    "gaie": Claim("ttft_s.p99", "p99 TTFT", -90.0),
}


# --- small helpers ---------------------------------------------------------------------------------
def lookup(summary: dict[str, Any], dotted: str) -> float:
    from loadgen.report import lookup as report_lookup

    return float(report_lookup(summary, dotted))


def delta(value: float, base: float) -> float:
    return (value - base) / base * 100.0 if base and not math.isnan(base) and not math.isnan(value) else math.nan


def fmt_s(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def fmt_pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.1f} %"


def verdict(ours: float, paper: float) -> str:
    """Lower is better for every metric here: beaten when our reduction is at least the paper's."""
    if math.isnan(ours):
        return "[yellow]n/a"
    return "[green]beaten" if ours <= paper else "[red]not beaten"


def plain(markup: str) -> str:
    """A verdict without its rich colour, for Markdown."""
    return markup.split("]", 1)[-1]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def cpu_idle(window_s: float = 1.0) -> float:
    """Fraction of the machine's CPU that was idle over ``window_s`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(window_s)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def settle(limit_s: float = 45.0, idle: float = 0.7) -> float:
    """Wait until the fresh stack's start-up work (warm transcribers loading the model) is done,
    so every configuration starts its clock on a quiet machine; give up after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    time.sleep(2.0)
    measured = cpu_idle()
    while measured < idle and time.monotonic() < deadline:
        measured = cpu_idle()
    return measured


def quiet_sink(name: str, line: str) -> None:
    """Children's logs stay in their files under the run's data directory."""


# --- transcription experiments (kueue, das) --------------------------------------------------------
async def replay_on_stack(items, trace_path: Path, config: Config, workdir: Path, results: Path, deadline_s: float):
    """One replay on a fresh embedded stack configured by ``config.env``; returns the loadgen Run."""
    from loadgen.cli import RichProgress
    from loadgen.replay import HttpTarget, ReplayOptions, replay
    from loadgen.results import write_run
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings
    from services.runtime.stack import EmbeddedStack

    data_dir = workdir / config.name
    stack = EmbeddedStack(
        data_dir,
        llm="sim",
        nats_port=0,
        llm_port=0,
        ingest_port=0,
        sink=quiet_sink,
        env=config.env,
        log_level="WARNING",
    )
    try:
        await asyncio.to_thread(stack.start)
    except Exception as exc:
        raise BenchError(f"{config.name}: the embedded stack did not start: {exc}".splitlines()[0]) from None
    try:
        idle = await asyncio.to_thread(settle)
        console.print(f"[dim]{config.name}: stack up, machine {idle:.0%} idle; replaying {len(items)} items")
        nc = await connect(NatsSettings(url=stack.nats_url), name="bench-paper")
        target = HttpTarget(stack.ingest_url)
        try:
            options = ReplayOptions(name=config.name, deadline_s=deadline_s, until="transcribed", trace=str(trace_path))
            options.extra["env"] = config.env
            with RichProgress() as progress:
                run = await replay(items, target, js=nc.jetstream(), options=options, progress=progress)
        finally:
            await target.aclose()
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        await asyncio.to_thread(stack.stop)
    write_run(results / f"{config.name}.jsonl", run)
    bad = [r for r in run.items if r.outcome in ("failed", "rejected", "timeout")]
    if bad:
        first = bad[0]
        logs = results / f"{config.name}-logs"  # the stack's data directory is temporary
        shutil.copytree(stack.log_dir, logs, dirs_exist_ok=True)
        raise BenchError(
            f"{config.name}: {len(bad)}/{len(run.items)} recordings did not complete "
            f"({first.id} {first.outcome}: {first.error or 'no terminal state'}; logs in {logs})"
        )
    shutil.rmtree(data_dir, ignore_errors=True)  # JetStream files of a finished run are not needed
    return run


def transcription_experiment(
    name: str, preset: str, models: list[str], configs: list[Config], args: argparse.Namespace, workdir: Path
) -> list[list]:
    """Every configuration once per repeat (interleaved, so drift hits all of them); the reports."""
    from loadgen.make import preset as make_preset
    from loadgen.replay import prepare_audio
    from loadgen.report import write_report
    from loadgen.trace import write_trace
    from services.common.progress import NullProgress

    items = make_preset(preset, seed=args.seed, models=models)
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    trace_path = write_trace(out / "trace.jsonl", items) or out / "trace.jsonl"
    console.print(f"[bold]{name}[/bold]: rendering {len(items)} recordings (cached, before any clock starts)")
    prepare_audio(items, cache_dir=None, base_dir=out, progress=NullProgress())
    repeats: list[list] = []
    for round_ in range(args.repeat):
        results = out if args.repeat == 1 else out / f"round-{round_ + 1}"
        results.mkdir(parents=True, exist_ok=True)
        runs = [
            asyncio.run(replay_on_stack(items, trace_path, c, workdir / f"{name}-{round_}", results, args.deadline))
            for c in configs
        ]
        write_report(runs, results)
        repeats.append(runs)
    return repeats


def kueue(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cores = str(os.cpu_count() or 1)
    configs = [
        Config(
            "A-no-admission",
            "no admission control: 32 slots, a fresh process per recording (pods without Kueue)",
            {
                "KUBESCRIBE_DISPATCHER_SLOTS": "32",
                "KUBESCRIBE_DISPATCHER_MAX_JOB_RECORDINGS": "1",
                "KUBESCRIBE_DISPATCHER_PRESPAWN": "false",
            },
        ),
        Config(
            "B-quota",
            f"admission by quota (paper's Kueue): {cores} slots, a fresh process per recording",
            {
                "KUBESCRIBE_DISPATCHER_SLOTS": cores,
                "KUBESCRIBE_DISPATCHER_MAX_JOB_RECORDINGS": "1",
                "KUBESCRIBE_DISPATCHER_PRESPAWN": "false",
            },
        ),
        Config("C-kubescribe", f"kubescribe defaults: {cores} slots, packed jobs, warm slots", {}),
    ]
    repeats = transcription_experiment("kueue", "kueue", ["tiny.en", "tiny.en"], configs, args, workdir)
    return summarize_transcription(
        "kueue", configs, repeats, [("B", "A"), ("C", "A"), ("C", "B")], paper_pairs={("B", "A"), ("C", "A")}
    )


def das(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    configs = [
        Config(
            "whole",
            "one slot owning the machine (2 threads): a whole GPU",
            {"KUBESCRIBE_DISPATCHER_SLOTS": "1", "KUBESCRIBE_WHISPER_CPU_THREADS": "2"},
        ),
        Config("slices", "one single-threaded slot per core (defaults): right-sized slices", {}),
    ]
    repeats = transcription_experiment("das", "das", ["tiny.en"], configs, args, workdir)
    return summarize_transcription("das", configs, repeats, [("s", "w")], paper_pairs={("s", "w")})


def summarize_transcription(
    name: str,
    configs: list[Config],
    repeats: list[list],
    pairs: list[tuple[str, str]],
    *,
    paper_pairs: set[tuple[str, str]],
) -> dict[str, Any]:
    """Median over repeats of each configuration's makespan and JCT; deltas between configurations."""
    from loadgen.report import summarize

    metrics = {"makespan_s": "makespan s", "jct_s.mean": "JCT mean s", "jct_s.p95": "JCT p95 s"}
    rows: dict[str, dict[str, Any]] = {}
    for index, config in enumerate(configs):
        summaries = [summarize(runs[index]) for runs in repeats]
        values = {key: median([lookup(s, key) for s in summaries]) for key in metrics}
        values["runs"] = {key: [round(lookup(s, key), 3) for s in summaries] for key in metrics}
        rows[config.name] = {"label": config.label, "env": config.env, **values}
    claim = PAPER[name]
    by_initial = {c.name[0]: c.name for c in configs}
    comparisons = []
    for a, b in pairs:
        ours, base = rows[by_initial[a]], rows[by_initial[b]]
        comparison = {
            "pair": f"{by_initial[a]} vs {by_initial[b]}",
            **{f"delta_{key}": delta(ours[key], base[key]) for key in metrics},
        }
        if (a, b) in paper_pairs:
            comparison["paper_pct"] = claim.delta_pct
            comparison["beaten"] = comparison[f"delta_{claim.metric}"] <= claim.delta_pct
        comparisons.append(comparison)
    return {"experiment": name, "metrics": metrics, "configs": rows, "comparisons": comparisons, "claim": claim}


# --- gaie --------------------------------------------------------------------------------------
def gaie(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from loadgen.cli import RichProgress
    from loadgen.llm import LlmOptions, benchmark
    from loadgen.make import make_prompts
    from loadgen.report import summarize, write_report
    from loadgen.results import write_run
    from loadgen.trace import write_trace
    from services.runtime.sim import SimConfig, SimLlmServer

    out = args.out / "gaie"
    out.mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(100, seed=args.seed, max_tokens=args.max_tokens)
    write_trace(out / "prompts.jsonl", prompts)
    levels = [int(x) for x in args.concurrency.split(",")]
    sim = SimConfig(ttft=0.2, itl=0.02, max_num_seqs=5, seed=args.seed)
    routings = ("random", "least-loaded")
    repeats: list[list] = []
    for round_ in range(args.repeat):
        results = out if args.repeat == 1 else out / f"round-{round_ + 1}"
        results.mkdir(parents=True, exist_ok=True)
        runs = []
        for routing in routings:
            replicas = [SimLlmServer(sim, isolated=True) for _ in range(2)]
            try:
                for replica in replicas:
                    replica.start()
            except RuntimeError as exc:
                for replica in replicas:
                    replica.stop()
                raise BenchError(f"gaie: a simulator replica did not start: {exc}".splitlines()[0]) from None
            try:
                options = LlmOptions(
                    name=routing,
                    concurrencies=levels,
                    requests=args.requests,
                    max_tokens=args.max_tokens,
                    routing=routing,
                    seed=args.seed + round_,
                )
                console.print(f"[dim]gaie: {routing} over 2 replicas, {args.requests} requests per level {levels}")
                with RichProgress() as progress:
                    progress._per_level = args.requests
                    run = asyncio.run(benchmark([r.base_url for r in replicas], prompts, options, progress=progress))
            finally:
                for replica in replicas:
                    replica.stop()
            write_run(results / f"{routing}.jsonl", run)
            errors = [r for r in run.llm if r.error]
            if errors:
                raise BenchError(f"gaie/{routing}: {len(errors)}/{len(run.llm)} requests failed ({errors[0].error})")
            runs.append(run)
        write_report(runs, results)
        repeats.append(runs)

    keys = {"overall": "ttft_s.p99", **{str(c): f"concurrency.{c}.ttft_s.p99" for c in levels}}
    p50 = {"overall": "ttft_s.p50", **{str(c): f"concurrency.{c}.ttft_s.p50" for c in levels}}
    rows: dict[str, dict[str, Any]] = {}
    for index, routing in enumerate(routings):
        summaries = [summarize(runs[index]) for runs in repeats]
        rows[routing] = {
            "p99": {k: median([lookup(s, key) for s in summaries]) for k, key in keys.items()},
            "p50": {k: median([lookup(s, key) for s in summaries]) for k, key in p50.items()},
            "runs_p99_overall": [round(lookup(s, "ttft_s.p99"), 3) for s in summaries],
        }
    deltas = {k: delta(rows["least-loaded"]["p99"][k], rows["random"]["p99"][k]) for k in keys}
    return {
        "experiment": "gaie",
        "levels": levels,
        "configs": rows,
        "delta_p99_pct": deltas,
        "claim": PAPER["gaie"],
        "sim": {"ttft": sim.ttft, "itl": sim.itl, "max_num_seqs": sim.max_num_seqs, "max_tokens": args.max_tokens},
        "requests_per_level": args.requests,
    }


# --- tables ------------------------------------------------------------------------------------
def transcription_tables(result: dict[str, Any]) -> tuple[Table, Table]:
    metrics = result["metrics"]
    title = {
        "kueue": "Kueue analogue: burst of 32 (tiny.en), makespan",
        "das": "DAS analogue: Poisson arrivals (tiny.en), mean JCT",
    }
    runs = Table(title=title[result["experiment"]])
    runs.add_column("configuration")
    runs.add_column("what it is")
    for label in metrics.values():
        runs.add_column(label, justify="right")
    for name, row in result["configs"].items():
        runs.add_row(name, row["label"], *(fmt_s(row[key]) for key in metrics))
    claim: Claim = result["claim"]
    deltas = Table(title=f"{result['experiment']}: ours vs the paper ({claim.label})")
    deltas.add_column("comparison")
    for label in metrics.values():
        deltas.add_column(f"Δ {label.removesuffix(' s')}", justify="right")
    deltas.add_column(f"paper Δ {claim.label}", justify="right")
    deltas.add_column("verdict")
    for comparison in result["comparisons"]:
        paper = comparison.get("paper_pct")
        deltas.add_row(
            comparison["pair"],
            *(fmt_pct(comparison[f"delta_{key}"]) for key in metrics),
            fmt_pct(paper) if paper is not None else "",
            verdict(comparison[f"delta_{claim.metric}"], paper) if paper is not None else "",
        )
    return runs, deltas


def gaie_table(result: dict[str, Any]) -> Table:
    sim = result["sim"]
    table = Table(
        title=f"GAIE analogue: p99 TTFT (s), 2 sim replicas (max-num-seqs {sim['max_num_seqs']}, ttft "
        f"{sim['ttft']} s, itl {sim['itl']} s, {sim['max_tokens']} tokens), {result['requests_per_level']} req/level"
    )
    table.add_column("concurrency")
    table.add_column("random p50", justify="right")
    table.add_column("random p99", justify="right")
    table.add_column("least-loaded p50", justify="right")
    table.add_column("least-loaded p99", justify="right")
    table.add_column("Δ p99", justify="right")
    table.add_column("paper Δ", justify="right")
    table.add_column("verdict")
    paper = result["claim"].delta_pct
    rows = result["configs"]
    for level in [*map(str, result["levels"]), "overall"]:
        table.add_row(
            level,
            fmt_s(rows["random"]["p50"][level]),
            fmt_s(rows["random"]["p99"][level]),
            fmt_s(rows["least-loaded"]["p50"][level]),
            fmt_s(rows["least-loaded"]["p99"][level]),
            fmt_pct(result["delta_p99_pct"][level]),
            fmt_pct(paper),
            verdict(result["delta_p99_pct"][level], paper),
        )
    return table


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, elapsed_s: float) -> str:
    """The same tables as the console, as Markdown (``summary.md``)."""
    lines = [
        "# kubescribe vs the ICPE'26 paper: local analogues",
        "",
        f"`bench/paper.py {' '.join(args.experiments)} --repeat {args.repeat}` on {os.cpu_count()} cores, "
        f"{elapsed_s / 60:.1f} min; medians over {args.repeat} round(s); Δ is against the baseline of the same run.",
        "",
    ]
    for result in results:
        claim: Claim = result["claim"]
        if result["experiment"] == "gaie":
            lines += [
                "## GAIE + llm-d analogue: p99 TTFT, random vs least-loaded routing (seconds)",
                "",
                "| concurrency | random p50 | random p99 | least-loaded p50 | least-loaded p99 "
                "| Δ p99 | paper Δ | verdict |",
                "|---|---|---|---|---|---|---|---|",
            ]
            rows = result["configs"]
            for level in [*map(str, result["levels"]), "overall"]:
                lines.append(
                    f"| {level} | {fmt_s(rows['random']['p50'][level])} | {fmt_s(rows['random']['p99'][level])} "
                    f"| {fmt_s(rows['least-loaded']['p50'][level])} | {fmt_s(rows['least-loaded']['p99'][level])} "
                    f"| {fmt_pct(result['delta_p99_pct'][level])} | {fmt_pct(claim.delta_pct)} "
                    f"| {plain(verdict(result['delta_p99_pct'][level], claim.delta_pct))} |"
                )
            lines.append("")
            continue
        metrics = result["metrics"]
        heading = {"kueue": "Kueue analogue: makespan of a burst of 32", "das": "DAS analogue: mean JCT"}
        lines += [f"## {heading[result['experiment']]}", ""]
        lines += ["| configuration | what it is | " + " | ".join(metrics.values()) + " |"]
        lines += ["|---|---|" + "---|" * len(metrics)]
        for name, row in result["configs"].items():
            lines.append(f"| {name} | {row['label']} | " + " | ".join(fmt_s(row[k]) for k in metrics) + " |")
        header = " | ".join(f"Δ {v.removesuffix(' s')}" for v in metrics.values())
        lines += ["", f"| comparison | {header} | paper | verdict |", "|---|" + "---|" * (len(metrics) + 2)]
        for c in result["comparisons"]:
            paper = f"{fmt_pct(c['paper_pct'])} {claim.label}" if "paper_pct" in c else ""
            judged = plain(verdict(c[f"delta_{claim.metric}"], c["paper_pct"])) if "paper_pct" in c else ""
            cells = " | ".join(fmt_pct(c[f"delta_{k}"]) for k in metrics)
            lines.append(f"| {c['pair']} | {cells} | {paper} | {judged} |")
        lines.append("")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Claim):
        return value.__dict__
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "experiments", nargs="*", default=list(EXPERIMENTS), help=f"which to run (default all): {' '.join(EXPERIMENTS)}"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds per experiment; tables show the median")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="reports directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds before a replay gives up")
    parser.add_argument("--concurrency", default="5,10,15,20", help="gaie: concurrency levels")
    parser.add_argument("--requests", type=int, default=100, help="gaie: requests per concurrency level")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="gaie: output tokens per request (loadgen llm's default)"
    )
    args = parser.parse_args(argv)
    unknown = [e for e in args.experiments if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {', '.join(unknown)}: choose from {', '.join(EXPERIMENTS)}")
    if min(args.repeat, args.requests, args.max_tokens) < 1:
        parser.error("--repeat, --requests and --max-tokens must be >= 1")
    args.experiments = [e for e in EXPERIMENTS if e in args.experiments]
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
        "kueue": kueue,
        "das": das,
        "gaie": gaie,
    }
    console.print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; results in {args.out}")
    start = time.monotonic()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="kubescribe-paper-") as tmp:
            for name in args.experiments:
                result = runners[name](args, Path(tmp))
                results.append(result)
                if name == "gaie":
                    console.print(gaie_table(result))
                else:
                    for table in transcription_tables(result):
                        console.print(table)
    except BenchError as exc:
        console.print(f"[red]paper benchmark failed[/red]: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130
    except Exception as exc:  # a bug or an environment problem: still one line, never a traceback
        console.print(f"[red]paper benchmark failed[/red]: {type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    elapsed = time.monotonic() - start
    (args.out / "summary.md").write_text(markdown(results, args, elapsed) + "\n")
    (args.out / "summary.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    console.print(
        f"{elapsed / 60:.1f} min; summary: {args.out / 'summary.md'}, reports per experiment under {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
