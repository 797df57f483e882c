"""``kubescribe plan``: simulate a GPU cluster before buying it, driving the real planner.

Examples::

    kubescribe plan --preset paper-kueue --rounds 5            # the paper's Kueue setup
    kubescribe plan --preset paper-das --rounds 5 --sweep slice_alpha=0.25,0.5,1
    kubescribe plan --spec cluster.yaml --trace trace.jsonl --calibration measured.json
    kubescribe plan measure -o local-calibration.json           # time the real transcriber here

Writes ``plan.json`` (outcome, calibration with sources), ``records.jsonl.gz`` (one line per
simulated recording and job), ``summary.md``, a Gantt PNG per arm and a JCT CDF PNG under
``--out``. Exit status: 0 on success, 2 on a usage error, 1 when the plan cannot run.
"""

from __future__ import annotations

import gzip
import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from services.plan.errors import PlanError

if TYPE_CHECKING:
    from services.plan.experiment import Experiment, Runs

PRESET_NAMES = ("paper-kueue", "paper-das")
"""For the help text only (``services.plan.presets.PRESETS`` is the registry): importing it
would load SimPy and numpy at every ``kubescribe`` start."""

plan_app = typer.Typer(
    help="Capacity planner: simulate Kueue, kube-scheduler, DAS and kubescribe's planner on a virtual clock.",
    invoke_without_command=True,
)
console = Console(stderr=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_outputs(outcome: dict[str, Any], runs: Runs, out: Path, command: str) -> list[Path]:
    """Everything a plan writes; the records compressed, the pictures from round one."""
    from services.plan.experiment import raw_records
    from services.plan.plots import cdf, gantt
    from services.plan.render import markdown

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(_jsonable(outcome), indent=1) + "\n")
    with gzip.open(out / "records.jsonl.gz", "wt") as handle:
        for row in raw_records(runs):
            handle.write(json.dumps(_jsonable(row)) + "\n")
    (out / "summary.md").write_text(markdown(outcome, command))
    paths = [out / "plan.json", out / "records.jsonl.gz", out / "summary.md"]
    for arm, results in runs.results.items():
        paths.append(
            gantt(results[0], out / f"gantt-{arm}.png", f"{outcome['experiment']}: {arm} (seed {runs.seeds[0]})")
        )
    jcts = {
        arm: [(r.done or math.nan) - r.arrival for result in results for r in result.recordings]
        for arm, results in runs.results.items()
    }
    paths.append(cdf(jcts, out / "jct-cdf.png", f"{outcome['experiment']}: job completion time, all rounds"))
    return paths


def _custom(spec_path: Path, trace_path: Path) -> Experiment:
    from loadgen.trace import read_trace
    from services.plan.experiment import Arm, Experiment
    from services.plan.spec import load_spec

    spec = load_spec(spec_path)
    items = read_trace(trace_path)
    data = spec.model_dump()
    return Experiment(
        name=spec.name,
        title=f"{spec.name}: {len(items)} recordings from {trace_path.name}",
        metric="makespan_s",
        arms=(Arm("spec", f"{spec_path.name}", "baseline", lambda p: data),),
        trace=lambda calibration, seed, params: items,
        assumptions=("a trace file is replayed as is: every round is the same run",),
    )


@plan_app.callback()
def plan(
    ctx: typer.Context,
    preset_name: Annotated[
        str | None, typer.Option("--preset", help=f"A built-in experiment: {', '.join(PRESET_NAMES)}.")
    ] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="Cluster spec (YAML/JSON).")] = None,
    trace: Annotated[Path | None, typer.Option("--trace", help="loadgen trace (JSONL) of recordings.")] = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Calibration file overriding the defaults.")
    ] = None,
    sweep: Annotated[
        list[str] | None, typer.Option("--sweep", help="key=v1,v2,... (calibration key or preset parameter).")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Trace seeds; means get 95 % intervals.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="First trace seed.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory.")] = None,
    no_sensitivity: Annotated[
        bool, typer.Option("--no-sensitivity", help="Skip the preset's sensitivity table.")
    ] = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.plan.calibration import Calibration, parse_sweep
    from services.plan.experiment import run
    from services.plan.presets import preset
    from services.plan.render import tables

    if (preset_name is None) == (spec is None):
        raise typer.BadParameter("give either --preset NAME or --spec FILE --trace FILE")
    if spec is not None and trace is None:
        raise typer.BadParameter("--spec needs --trace (a loadgen trace of recordings)")
    experiment = preset(preset_name) if preset_name else _custom(spec, trace)  # type: ignore[arg-type]
    cal = Calibration.default()
    if calibration is not None:
        cal = cal.merged(calibration)
    sweeps = dict(parse_sweep(s) for s in sweep or [])
    table = sweeps or ({} if no_sensitivity else experiment.sensitivity)
    total = rounds * len(experiment.arms) * (1 + sum(len(v) for v in table.values()))
    with Progress(
        TextColumn(f"[bold]{experiment.name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("runs", total=total)
        outcome, runs = run(
            experiment,
            cal,
            rounds=rounds,
            seed=seed,
            sweeps=sweeps,
            sensitivity=not no_sensitivity,
            tick=lambda: progress.advance(task),
        )
    out_dir = out or Path("plan-results") / experiment.name
    command = "kubescribe plan " + shlex.join(sys.argv[2:]) if len(sys.argv) > 2 else "kubescribe plan"
    out_console = Console(width=200 if not sys.stdout.isatty() else None)
    for rendered in tables(outcome):
        out_console.print(rendered)
    write_outputs(outcome, runs, out_dir, command)
    console.print(f"{outcome['elapsed_s']:.1f} s simulated wall time; outputs in {out_dir}")


@plan_app.command("measure")
def measure_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibration file to write (JSON).")] = Path(
        "local-calibration.json"
    ),
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timings per clip.")] = 3,
) -> None:
    """Time the real transcriber on this machine: the local.* calibration entries, with sources."""
    from services.plan.measure import local_entries, measure

    calibration = measure(repeats=repeats, note=console.print)
    output.write_text(json.dumps(local_entries(calibration), indent=1) + "\n")
    console.print(f"wrote {output}: use it with --calibration {output}")


@plan_app.command("schema")
def schema(output: Annotated[Path, typer.Argument(help="Directory for the JSON Schema.")] = Path("schemas")) -> None:
    """Write the cluster spec's JSON Schema."""
    from services.plan.spec import schema_files

    output.mkdir(parents=True, exist_ok=True)
    for name, body in schema_files().items():
        (output / name).write_text(json.dumps(body, indent=2) + "\n")
        console.print(output / name)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")


__all__ = ["PlanError", "plan_app", "register", "write_outputs"]
