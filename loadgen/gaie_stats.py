"""Statistics of the GAIE experiment: per-round percentiles, means with 95 % bootstrap intervals, verdicts.

The unit of replication is the round (a fresh gateway, prompts in a new order): each round gives
one TTFT p50/p99 per arm and level, and the interval is over rounds, never over requests (the
requests of one round are not independent: they share queues). The change against ``random`` is
paired by round (``p99_arm / p99_random - 1`` per round), then averaged and bootstrapped.

Verdicts compare with the paper's claim, tail TTFT cut by up to 90 % (llm-d's precise
prefix-cache-aware picker vs random): the interval of the level with the largest cut contains
-0.90 → "consistent with the paper within the interval"; lies entirely above it (a smaller cut) →
"smaller"; entirely below → "larger".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

PAPER_CHANGE = -0.90
"""The paper's headline: tail TTFT up to -90 % against random routing."""
BOOTSTRAP = 10_000


def interval(values: list[float], seed: int = 0) -> dict[str, Any]:
    """Mean and 95 % percentile-bootstrap interval of the mean (a single value has no interval)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return {"mean": mean, "low": mean, "high": mean, "n": len(data)}
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(BOOTSTRAP, len(data)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": mean, "low": float(low), "high": float(high), "n": len(data)}


def format_interval(value: dict[str, Any], spec: str = ".2f") -> str:
    """``mean [low, high]`` of an :func:`interval`, each number formatted with ``spec``."""
    return f"{value['mean']:{spec}} [{value['low']:{spec}}, {value['high']:{spec}}]"


def verdict(change: dict[str, Any], paper: float = PAPER_CHANGE) -> str:
    if change["low"] <= paper <= change["high"]:
        return "consistent with the paper within the interval"
    return "smaller" if change["low"] > paper else "larger"


def per_round(records: list[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, float]]:
    """(arm, concurrency, round) → TTFT p50/p99/mean (model s) and error count of the measured requests."""
    groups: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    errors: dict[tuple[str, int, int], int] = defaultdict(int)
    for r in records:
        if r["phase"] != "measure":
            continue
        key = (r["arm"], r["concurrency"], r["round"])
        if r["error"] or r["ttft_s"] is None:
            errors[key] += 1
        else:
            groups[key].append(r["ttft_s"])
    out = {}
    for key in set(groups) | set(errors):
        values = np.asarray(groups.get(key) or [np.nan])
        out[key] = {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "mean": float(values.mean()),
            "requests": len(groups.get(key, [])),
            "errors": errors.get(key, 0),
        }
    return out


def summarize(records: list[dict[str, Any]], options: Any) -> dict[str, Any]:
    rounds = per_round(records)
    arms = list(dict.fromkeys(r["arm"] for r in records))
    levels = sorted({key[1] for key in rounds})
    table: dict[str, dict[str, Any]] = {}
    for arm in arms:
        table[arm] = {}
        for level in levels:
            cells = [rounds[(arm, level, n)] for n in range(options.rounds) if (arm, level, n) in rounds]
            table[arm][str(level)] = {
                "ttft_p50_s": interval([c["p50"] for c in cells]),
                "ttft_p99_s": interval([c["p99"] for c in cells]),
                "errors": sum(c["errors"] for c in cells),
                "requests": sum(c["requests"] for c in cells),
            }
    changes: dict[str, dict[str, Any]] = {}
    if "random" in arms:
        for arm in arms:
            if arm == "random":
                continue
            changes[arm] = {}
            for level in levels:
                paired = [
                    rounds[(arm, level, n)]["p99"] / rounds[("random", level, n)]["p99"] - 1
                    for n in range(options.rounds)
                    if (arm, level, n) in rounds and ("random", level, n) in rounds
                ]
                if paired:
                    changes[arm][str(level)] = interval(paired)
            if changes[arm]:
                best = min(changes[arm], key=lambda lv: changes[arm][lv]["mean"])
                changes[arm]["largest_cut"] = {"concurrency": int(best), **changes[arm][best]}
                changes[arm]["verdict"] = verdict(changes[arm][best])
    return {
        "unit": "model seconds (client-measured / time_scale)",
        "ttft": table,
        "p99_change_vs_random": changes,
        "per_round": [{"arm": a, "concurrency": c, "round": n, **v} for (a, c, n), v in sorted(rounds.items())],
    }
