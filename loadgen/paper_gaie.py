"""The OLD local analogue of the paper's GAIE experiment, kept runnable until the Envoy-based
experiment replaces it: two isolated simulator replicas (llm-d-inference-sim's default
``max-num-seqs`` 5 — vLLM's own default is 256), fixed TTFT and ITL, routed by the load client
itself (random vs least-loaded). It tests neither prefix-cache affinity nor vLLM under load, so
its numbers are an illustration of client-side routing, not a reproduction of the paper.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from loadgen.paper_stack import PaperError

ROUTINGS = ("random", "least-loaded")


def gaie_local(out: Path, *, rounds: int, seed: int, levels=(5, 10, 15, 20), requests=100, max_tokens=128) -> dict:
    """Every round: both routings over two fresh replicas; returns p50/p99 TTFT per level per round."""
    from loadgen.llm import LlmOptions, benchmark
    from loadgen.make import make_prompts
    from loadgen.report import lookup, summarize
    from loadgen.results import write_run
    from loadgen.trace import write_trace
    from services.runtime.sim import SimConfig, SimLlmServer

    out.mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(100, seed=seed, max_tokens=max_tokens)
    write_trace(out / "prompts.jsonl", prompts)
    sim = SimConfig(ttft=0.2, itl=0.02, max_num_seqs=5, seed=seed)
    per_round: list[dict[str, Any]] = []
    for round_ in range(rounds):
        row: dict[str, Any] = {}
        for routing in ROUTINGS:
            replicas = [SimLlmServer(sim, isolated=True) for _ in range(2)]
            try:
                for replica in replicas:
                    replica.start()
                options = LlmOptions(
                    name=routing,
                    concurrencies=list(levels),
                    requests=requests,
                    max_tokens=max_tokens,
                    routing=routing,
                    seed=seed + round_,
                )
                run = asyncio.run(benchmark([r.base_url for r in replicas], prompts, options))
            except RuntimeError as exc:
                raise PaperError(f"gaie-local: a simulator replica failed: {exc}".splitlines()[0]) from None
            finally:
                for replica in replicas:
                    replica.stop()
            write_run(out / f"round-{round_ + 1}-{routing}.jsonl", run)
            errors = [r for r in run.llm if r.error]
            if errors:
                raise PaperError(
                    f"gaie-local/{routing}: {len(errors)}/{len(run.llm)} requests failed ({errors[0].error})"
                )
            summary = summarize(run)
            row[routing] = {
                str(level): {q: float(lookup(summary, f"concurrency.{level}.ttft_s.{q}")) for q in ("p50", "p99")}
                for level in levels
            }
        per_round.append(row)
    deltas = {
        str(level): [
            (r["least-loaded"][str(level)]["p99"] / r["random"][str(level)]["p99"] - 1) * 100
            if r["random"][str(level)]["p99"] and not math.isnan(r["random"][str(level)]["p99"])
            else math.nan
            for r in per_round
        ]
        for level in levels
    }
    return {
        "sim": {"ttft_s": sim.ttft, "itl_s": sim.itl, "max_num_seqs": sim.max_num_seqs, "max_tokens": max_tokens},
        "requests_per_level": requests,
        "rounds": per_round,
        "delta_p99_pct": deltas,
    }
