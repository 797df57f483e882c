"""Running arms over rounds: each arm is a cluster spec, each round a trace seed; comparisons
are paired by round, so the trace's own variance does not widen the interval of a difference.

An :class:`Experiment` is data (arms, the metric the claim is about, the claim, the parameters
and assumptions it may be swept over); :func:`run` executes it and returns a JSON-able outcome
plus the raw runs for plots and records. Nothing here prints: the CLI renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from loadgen.trace import TraceItem
from services.plan.calibration import Calibration
from services.plan.errors import PlanError
from services.plan.metrics import METRICS, bootstrap, paired_delta_pct, records, summarize
from services.plan.sim import ClusterSim, Result, dispatcher_settings
from services.plan.spec import ClusterSpec
from services.plan.workload import recordings

Group = Literal["baseline", "paper", "variant", "kubescribe"]
Params = Mapping[str, float]


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    group: Group
    spec: Callable[[Params], dict[str, Any]]
    """Cluster spec data for the experiment's parameters (e.g. how many GPUs)."""
    baseline: str | None = None


@dataclass(frozen=True)
class Claim:
    metric: str
    delta_pct: float
    text: str


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    metric: str
    arms: tuple[Arm, ...]
    trace: Callable[[Calibration, int, Params], list[TraceItem]]
    params: Mapping[str, float] = field(default_factory=dict)
    """Experiment parameters that are not calibration (GPU count, kube-burner iterations)."""
    claim: Claim | None = None
    sensitivity: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    why: Mapping[str, str] = field(default_factory=dict)
    """Arm name → why its difference is what it is (the mechanism in the model)."""
    default_model: str = "tiny.en"


def verdict(delta: Mapping[str, float], paper_pct: float) -> str:
    """Where the paper's figure falls against our interval of the same difference."""
    if delta["lo"] <= paper_pct <= delta["hi"]:
        return "consistent with the paper within the interval"
    same_sign = (paper_pct < 0) == (delta["mean"] < 0)
    if not same_sign or abs(delta["mean"]) < abs(paper_pct):
        return "smaller"
    return "larger"


@dataclass
class Runs:
    """Every run of one configuration: arm → one Result per round."""

    results: dict[str, list[Result]]
    seeds: list[int]


def simulate(
    experiment: Experiment, calibration: Calibration, params: Params, seeds: list[int], tick: Callable[[], None]
) -> Runs:
    specs = {arm.name: ClusterSpec.model_validate(arm.spec(params)) for arm in experiment.arms}
    settings = {name: dispatcher_settings(spec) for name, spec in specs.items()}
    results: dict[str, list[Result]] = {arm.name: [] for arm in experiment.arms}
    for seed in seeds:
        trace = recordings(experiment.trace(calibration, seed, params), experiment.default_model)
        for arm in experiment.arms:
            fresh = [type(r)(r.id, r.arrival, r.duration_s, r.model, r.tenant, r.priority) for r in trace]
            results[arm.name].append(ClusterSim(specs[arm.name], calibration, fresh, settings[arm.name]).run())
            tick()
    return Runs(results, seeds)


def digest(experiment: Experiment, runs: Runs) -> dict[str, Any]:
    """Per-arm means with intervals, and each arm's paired difference against its baseline."""
    summaries = {name: [summarize(r) for r in results] for name, results in runs.results.items()}
    arms = {}
    for arm in experiment.arms:
        rows = summaries[arm.name]
        arms[arm.name] = {
            "label": arm.label,
            "group": arm.group,
            "baseline": arm.baseline,
            "summary": {key: bootstrap([row[key] for row in rows]) for key in [*METRICS, "jobs", "evictions"]},
        }
    comparisons = []
    for arm in experiment.arms:
        if arm.baseline is None:
            continue
        mine, base = summaries[arm.name], summaries[arm.baseline]
        deltas = {key: paired_delta_pct([r[key] for r in mine], [r[key] for r in base]) for key in METRICS}
        row: dict[str, Any] = {"arm": arm.name, "baseline": arm.baseline, "group": arm.group, "delta_pct": deltas}
        if arm.group == "paper" and experiment.claim is not None:
            row["paper_pct"] = experiment.claim.delta_pct
            row["verdict"] = verdict(deltas[experiment.claim.metric], experiment.claim.delta_pct)
        if arm.name in experiment.why:
            row["why"] = experiment.why[arm.name]
        comparisons.append(row)
    return {"arms": arms, "comparisons": comparisons}


def run(
    experiment: Experiment,
    calibration: Calibration,
    *,
    rounds: int,
    seed: int = 1,
    sweeps: Mapping[str, list[float]] | None = None,
    sensitivity: bool = True,
    tick: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], Runs]:
    """The experiment at its defaults, then once per swept value; returns (outcome, default runs)."""
    if rounds < 1:
        raise PlanError(f"--rounds must be >= 1, got {rounds}")
    started = time.perf_counter()
    seeds = list(range(seed, seed + rounds))
    params = dict(experiment.params)
    runs = simulate(experiment, calibration, params, seeds, tick)
    outcome: dict[str, Any] = {
        "experiment": experiment.name,
        "title": experiment.title,
        "metric": experiment.metric,
        "claim": None if experiment.claim is None else vars(experiment.claim),
        "rounds": rounds,
        "seeds": seeds,
        "params": params,
        "assumptions": list(experiment.assumptions),
        **digest(experiment, runs),
    }
    table = dict(sweeps or {}) or (dict(experiment.sensitivity) if sensitivity else {})
    rows = []
    for key, values in table.items():
        for value in values:
            cal, swept = calibration, dict(params)
            if key in params:
                swept[key] = value
            else:
                calibration[key]  # an unknown key fails here, listing the known ones
                cal = calibration.override(key, value, f"swept: {key}={value}")
            result = digest(experiment, simulate(experiment, cal, swept, seeds, tick))
            rows.append(
                {
                    "key": key,
                    "value": value,
                    "arms": {n: a["summary"][experiment.metric]["mean"] for n, a in result["arms"].items()},
                    "deltas": {c["arm"]: c["delta_pct"][experiment.metric] for c in result["comparisons"]},
                }
            )
    outcome["sweep"] = rows
    outcome["sweep_order"] = _by_influence(rows)
    outcome["calibration"] = calibration.to_json()
    outcome["elapsed_s"] = time.perf_counter() - started
    return outcome, runs


def _by_influence(rows: list[dict[str, Any]]) -> list[str]:
    """Swept keys, most influential first: the widest range of any comparison's mean difference."""
    spread: dict[str, float] = {}
    for key in dict.fromkeys(r["key"] for r in rows):
        means: dict[str, list[float]] = {}
        for row in (r for r in rows if r["key"] == key):
            for arm, delta in row["deltas"].items():
                means.setdefault(arm, []).append(delta["mean"])
        spread[key] = max((max(v) - min(v) for v in means.values()), default=0.0)
    return sorted(spread, key=lambda k: -spread[k])


def raw_records(runs: Runs) -> list[dict[str, Any]]:
    return [
        row
        for arm, results in runs.results.items()
        for seed, result in zip(runs.seeds, results, strict=True)
        for row in records(result, arm=arm, seed=seed)
    ]
