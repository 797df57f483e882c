"""What a simulated run measured, and intervals over rounds.

Per run: makespan (first arrival → last recording done), job completion time per recording
(arrival → done; mean and p95), the wait before a recording's Job got a GPU (queue wait, Kueue's
share of it as admission wait), and GPU utilisation as the share of compute slices held by pods
over the makespan. Over rounds: the mean with a 95 % percentile-bootstrap interval (numpy), and
for comparisons the paired per-round relative difference, bootstrapped the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.plan.gpus import COMPUTE_SLICES, profile_of
from services.plan.sim import Result

METRICS = {
    "makespan_s": "makespan s",
    "jct_mean_s": "JCT mean s",
    "jct_p95_s": "JCT p95 s",
    "queue_wait_mean_s": "queue wait s",
    "admission_wait_mean_s": "admission wait s",
    "gpu_util": "GPU util",
}


def summarize(result: Result) -> dict[str, float]:
    recordings = result.recordings
    start = min(r.arrival for r in recordings)
    end = max(r.done or math.nan for r in recordings)
    jct = np.array([(r.done or math.nan) - r.arrival for r in recordings])
    jobs = result.jobs
    first_bound = {j.id: min((run[2] for run in j.runs), default=math.nan) for j in jobs}
    waits = [first_bound[j.id] - j.created for j in jobs]
    admission = [(j.admitted if j.admitted is not None else j.created) - j.created for j in jobs]
    types = {g.name: g.gpu_type for g in result.gpus}
    held = sum(  # local slots are not GPUs: they add nothing, and utilisation is NaN
        profile_of(types[gpu], resource).compute * (to - frm)
        for j in jobs
        for gpu, resource, frm, to in j.runs
        if gpu in types
    )
    capacity = COMPUTE_SLICES * len(result.gpus) * (end - start)
    return {
        "makespan_s": end - start,
        "jct_mean_s": float(jct.mean()),
        "jct_p95_s": float(np.percentile(jct, 95)),
        "queue_wait_mean_s": float(np.mean(waits)),
        "admission_wait_mean_s": float(np.mean(admission)),
        "gpu_util": held / capacity if capacity > 0 else math.nan,
        "jobs": float(len(jobs)),
        "evictions": float(sum(j.evictions for j in jobs)),
    }


def records(result: Result, **labels: Any) -> list[dict[str, Any]]:
    """One raw record per recording and per job, for the committed JSONL."""
    rows: list[dict[str, Any]] = []
    for r in result.recordings:
        rows.append(
            {"record": "recording", **labels, "id": r.id, "model": r.model, "audio_s": r.duration_s,
             "arrival_s": r.arrival, "done_s": r.done, "parts": r.parts}
        )  # fmt: skip
    for j in result.jobs:
        rows.append(
            {"record": "job", **labels, "id": j.id, "model": j.model, "resource": j.resource,
             "recordings": [p[0] for p in j.parts], "created_s": j.created, "admitted_s": j.admitted,
             "finished_s": j.finished, "evictions": j.evictions,
             "runs": [{"gpu": g, "resource": res, "from_s": a, "to_s": b} for g, res, a, b in j.runs]}
        )  # fmt: skip
    return rows


def bootstrap(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean and 95 % percentile-bootstrap interval of the mean."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(resamples, data.size), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(data.mean()), "lo": float(lo), "hi": float(hi), "n": int(data.size)}


def paired_delta_pct(values: Sequence[float], base: Sequence[float]) -> dict[str, float]:
    """Per-round (value - base) / base in %, bootstrapped: rounds share their trace."""
    deltas = [(v - b) / b * 100.0 if b else math.nan for v, b in zip(values, base, strict=True)]
    return {**bootstrap(deltas), "rounds": [round(d, 3) for d in deltas]}
