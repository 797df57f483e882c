"""GuideLLM vs ``kubescribe loadgen llm`` on one gateway configuration: do the two clients agree on TTFT?

Both drive a fresh gateway with the same options, round after round (the clients alternate which
goes first); per round each client's TTFT p50 and p99 are taken, and the ratio
``loadgen / guidellm - 1`` is averaged over rounds with a 95 % bootstrap interval
(:func:`loadgen.gaie_stats.interval`). The configuration keeps the model's TTFT dominant (real
time, a 0.5 s prefill with no prefix dependence, run one at a time as the calibration does, one
replica), so what is compared is the clients' clocks, not routing luck.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.gaie import GaieOptions, run_arm
from loadgen.gaie_stats import interval

AGREEMENT = GaieOptions(
    arms=("random",),
    rounds=5,
    concurrencies=(5,),
    requests=40,
    warmup_requests=10,
    max_tokens=16,
    replicas=1,
    time_scale=1.0,
    overrides={"ttft": 0.5, "ttft_per_token": 0.0},
)


def _percentiles(records: list[dict[str, Any]]) -> dict[str, float]:
    ttft = [r["ttft_s"] for r in records if r["phase"] == "measure" and not r["error"]]
    if not ttft:
        raise RuntimeError("no successful measured request")
    return {"p50": float(np.percentile(ttft, 50)), "p99": float(np.percentile(ttft, 99)), "requests": len(ttft)}


def compare_clients(options: GaieOptions = AGREEMENT, out: Path | None = None) -> dict[str, Any]:
    rounds = []
    for round_ in range(options.rounds):
        order = ("loadgen", "guidellm") if round_ % 2 == 0 else ("guidellm", "loadgen")
        cells = {c: _percentiles(run_arm(replace(options, client=c), "random", round_)) for c in order}
        rounds.append(cells)
    result: dict[str, Any] = {"rounds": rounds, "options": {"rounds": options.rounds, "requests": options.requests}}
    for metric in ("p50", "p99"):
        result[f"{metric}_loadgen_vs_guidellm"] = interval(
            [r["loadgen"][metric] / r["guidellm"][metric] - 1 for r in rounds]
        )
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result
