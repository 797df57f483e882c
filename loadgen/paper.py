"""``kubescribe loadgen paper``: the ICPE'26 paper's experiments, registered as data.

Each :class:`PaperExperiment` says what it is, at which scale its numbers are (simulated at
cluster scale, or measured on this machine) and how to run it; running writes raw records,
the run environment and ``result.json`` under ``--out``; :mod:`loadgen.paper_render` turns
those files into tables and Markdown, and can do so again later without re-running anything.

- ``kueue``, ``das``: the planner presets ``paper-kueue`` / ``paper-das`` (simulated at cluster
  scale, driving the real kubescribe planner; never run on a GPU cluster here);
- ``ground``: the simulator's local twin against real replays on the embedded stack
  (measured here: it is what makes the simulated numbers worth reading);
- ``gaie-local``: the OLD local analogue of the GAIE experiment (client-side routing over two
  fixed-latency simulator replicas), kept until the gateway experiment replaces it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from loadgen.paper_stack import PaperError

Scale = Literal["simulated at cluster scale", "measured on this machine"]


@dataclass(frozen=True)
class Context:
    out: Path
    rounds: int
    seed: int
    note: Callable[[str], None]
    reuse: bool = False
    """Re-derive from the raw records already under ``out`` instead of running again, where possible."""


@dataclass(frozen=True)
class PaperExperiment:
    name: str
    title: str
    scale: Scale
    run: Callable[[Context], dict[str, Any]]


def _plan(preset_name: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from services.plan.calibration import Calibration
        from services.plan.cli import write_outputs
        from services.plan.experiment import run as run_plan
        from services.plan.presets import preset

        outcome, runs = run_plan(preset(preset_name), Calibration.default(), rounds=ctx.rounds, seed=ctx.seed)
        command = f"kubescribe plan --preset {preset_name} --rounds {ctx.rounds} --seed {ctx.seed}"
        write_outputs(outcome, runs, ctx.out, command)
        return {"kind": "plan", "preset": preset_name, "command": command, "outcome": outcome}

    return run


def _ground(ctx: Context) -> dict[str, Any]:
    from loadgen.paper_ground import ground
    from services.plan.metrics import bootstrap

    rounds = [
        ground(ctx.out / f"round-{i + 1}", seed=ctx.seed + i, reuse=ctx.reuse, note=ctx.note) for i in range(ctx.rounds)
    ]
    names = [w["workload"] for w in rounds[0]["workloads"]]
    table = {}
    for name in names:
        rows = [w for r in rounds for w in r["workloads"] if w["workload"] == name]
        table[name] = {
            metric: {
                "error_pct": bootstrap([row["error"][metric] * 100 for row in rows]),
                "measured": bootstrap([row["measured"][metric] for row in rows]),
                "predicted": bootstrap([row["predicted"][metric] for row in rows]),
            }
            for metric in ("makespan_s", "jct_mean_s")
        }
    return {"kind": "ground", "tolerance": rounds[0]["tolerance"], "workloads": table, "rounds": rounds}


def _gaie(ctx: Context) -> dict[str, Any]:
    from loadgen.paper_gaie import gaie_local
    from services.plan.metrics import bootstrap

    result = gaie_local(ctx.out, rounds=ctx.rounds, seed=ctx.seed)
    result["delta_p99"] = {level: bootstrap(values) for level, values in result["delta_p99_pct"].items()}
    return {"kind": "gaie-local", **result}


EXPERIMENTS: dict[str, PaperExperiment] = {
    e.name: e
    for e in (
        PaperExperiment("kueue", "Kueue vs kube-scheduler alone (paper-kueue)", "simulated at cluster scale",
                        _plan("paper-kueue")),
        PaperExperiment("das", "DAS MIG slices vs whole GPUs (paper-das)", "simulated at cluster scale",
                        _plan("paper-das")),
        PaperExperiment("ground", "simulator vs real replays, local backend", "measured on this machine", _ground),
        PaperExperiment("gaie-local", "OLD local GAIE analogue: client routing over 2 fixed-latency sim replicas",
                        "measured on this machine", _gaie),
    )
}  # fmt: skip
DEFAULT = ("kueue", "das")


def environment(out: Path | None = None) -> dict[str, Any]:
    """Where and under what load the numbers were made (``dirty`` ignores ``out``, the results)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    excluded = [f":(exclude){out}"] if out is not None else []
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)),
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(
    names: list[str], out: Path, *, rounds: int, seed: int, note: Callable[[str], None], reuse: bool = False
) -> dict[str, Any]:
    """Run the named experiments one after another; each writes under ``out/<name>/``."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise PaperError(f"unknown experiment {', '.join(unknown)}: choose from {', '.join(EXPERIMENTS)}")
    if rounds < 5:
        note(f"[yellow]{rounds} round(s): the committed results use at least 5")
    results = {}
    for name in names:
        experiment = EXPERIMENTS[name]
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        before = environment(out)
        result = experiment.run(Context(target, rounds, seed, note, reuse))
        result.update(name=name, title=experiment.title, scale=experiment.scale, rounds=rounds, seed=seed)
        result["environment"] = {"start": before, "end": environment(out)}
        (target / "result.json").write_text(json.dumps(_clean(result), indent=1) + "\n")
        (target / "environment.json").write_text(json.dumps(result["environment"], indent=1) + "\n")
        results[name] = result
    return results


def _clean(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def load(out: Path) -> dict[str, Any]:
    """The results an earlier run wrote (for rendering without re-running)."""
    found = {}
    for name in EXPERIMENTS:
        path = out / name / "result.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    if not found:
        raise PaperError(f"no results under {out}: run `kubescribe loadgen paper --out {out}` first")
    return found
