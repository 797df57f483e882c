"""The paper's GAIE experiment with real parts: Envoy's RANDOM vs the local endpoint picker.

Per round and arm, a fresh gateway (:class:`~services.runtime.gateway.GatewayStack`: N simulator
replicas, calibrated from ``services/runtime/sim/calibration.json``, behind a real Envoy) is
warmed up at concurrency 25 with 1 output token, then driven at concurrency 5/10/15/20 with 256
requests per level and 512 output tokens over the 16 synthetic ~8.5k-token transcripts
(:mod:`loadgen.gaie_workload`), by ``kubescribe loadgen llm``'s client or by GuideLLM
(:mod:`loadgen.gaie_guidellm`). Arms run in a rotated order each round so that drift in the
machine's load does not favour one. The picker arm is the *local stand-in* for llm-d's picker
(:mod:`services.runtime.gateway.scoring` says how it differs).

The simulator runs ``time_scale`` times faster than the modelled GPU; every duration recorded
here is converted back to model seconds (divided by ``time_scale``). Client, Envoy and picker
overheads are real time, so they are magnified by ``1 / time_scale`` in model seconds: that
biases both arms' TTFT up, and the picker's most (it adds an ext_proc round trip).

This module is the engine (no CLI, no printing); ``kubescribe loadgen gaie`` (:mod:`loadgen.gaie_cli`)
and the paper command call :func:`run_experiment`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen.errors import TargetError
from loadgen.gaie_workload import OUTPUT_TOKENS, PROMPTS, transcript_prompts
from loadgen.llm import LlmOptions, benchmark
from loadgen.trace import TraceItem
from services.runtime.gateway import POLICIES, GatewayStack
from services.runtime.sim.calibration import DEFAULT_PROFILE, calibration, sources

CLIENTS = ("loadgen", "guidellm")


@dataclass
class GaieOptions:
    """One experiment; defaults are the paper's setup (the counts shrink with ``scale``)."""

    arms: Sequence[str] = ("random", "picker", "least-request")
    rounds: int = 5
    concurrencies: Sequence[int] = (5, 10, 15, 20)
    requests: int = 256
    """Requests per concurrency level (the paper's 256), before ``scale``."""
    warmup_requests: int = 32
    """Warm-up requests (1 output token each, not scaled): every prompt twice."""
    warmup_concurrency: int = 25
    max_tokens: int = OUTPUT_TOKENS
    prompts: int = PROMPTS
    replicas: int = 2
    calibration: str = DEFAULT_PROFILE
    overrides: dict[str, Any] = field(default_factory=dict)
    """SimConfig fields replacing the calibration's (what a sensitivity sweep varies)."""
    time_scale: float = 0.25
    """Simulated durations x this; smaller is faster but magnifies real overheads in model seconds."""
    stream_interval: int = 64
    """Tokens per SSE chunk after the first: TTFT is unaffected, client and sim CPU drop."""
    picker_interval: float = 0.05
    """Model seconds between the picker's metric scrapes (llm-d's EPP default: 50 ms)."""
    scale: float = 1.0
    """Multiplies request counts (CI runs use 0.1 or less)."""
    client: str = "loadgen"
    seed: int = 0

    def validate(self) -> None:
        unknown = [a for a in self.arms if a not in POLICIES]
        if unknown:
            raise TargetError(f"unknown arm(s) {', '.join(unknown)}: use {', '.join(POLICIES)}")
        if self.client not in CLIENTS:
            raise TargetError(f"unknown client {self.client!r}: use {' or '.join(CLIENTS)}")
        if self.rounds < 1 or not 0 < self.scale <= 1 or not 0 < self.time_scale <= 1:
            raise TargetError("rounds >= 1, 0 < scale <= 1 and 0 < time_scale <= 1 are required")

    @property
    def level_requests(self) -> int:
        return max(1, round(self.requests * self.scale))


Progress = Callable[[str], None]


def sim_config(options: GaieOptions):
    """The replicas' SimConfig: the calibration, the overrides, the time scale and the served name."""
    return calibration(
        options.calibration,
        **{"model": "qwen2.5-7b-sim", "time_scale": options.time_scale, "stream_interval": options.stream_interval},
        **options.overrides,
    )


def _records(results, *, arm: str, round_: int, client: str, scale: float, phase: str) -> list[dict[str, Any]]:
    """Client results in model seconds, one flat dict per request (the raw data committed)."""
    out = []
    for r in results:
        out.append(
            {
                "arm": arm,
                "round": round_,
                "client": client,
                "phase": phase,
                "concurrency": r.concurrency,
                "id": r.id,
                "ttft_s": None if r.ttft_s is None else r.ttft_s / scale,
                "latency_s": None if r.latency_s is None else r.latency_s / scale,
                "itl_s": None if r.itl_s is None else r.itl_s / scale,
                "tokens_in": r.tokens_in,
                "tokens_out": r.tokens_out,
                "error": r.error,
            }
        )
    return out


async def _drive_loadgen(base_url: str, prompts: list[TraceItem], options: GaieOptions, round_: int, arm: str):
    warm = [p.model_copy(update={"max_tokens": 1}) for p in prompts]
    warmup = await benchmark(
        base_url,
        warm,
        LlmOptions(
            name=f"{arm}-warmup",
            concurrencies=(options.warmup_concurrency,),
            requests=options.warmup_requests,
            max_tokens=1,
        ),
    )
    run = await benchmark(
        base_url,
        prompts,
        LlmOptions(
            name=arm,
            concurrencies=tuple(options.concurrencies),
            requests=options.level_requests,
            max_tokens=options.max_tokens,
            seed=options.seed + round_,
        ),
    )
    return warmup.llm, run.llm


def run_arm(options: GaieOptions, arm: str, round_: int) -> list[dict[str, Any]]:
    """One arm of one round on a fresh gateway; the request records (warm-up included, marked)."""
    prompts = transcript_prompts(options.prompts, max_tokens=options.max_tokens)
    random.Random(f"{options.seed}-{round_}").shuffle(prompts)  # each round sends the prompts in another order
    config = sim_config(options)
    interval = options.picker_interval * options.time_scale
    with GatewayStack(config, options.replicas, arm, interval=interval) as gateway:
        if options.client == "guidellm":
            from loadgen.gaie_guidellm import drive_guidellm

            warmup, results = drive_guidellm(gateway.base_url, prompts, options, config.model)
        else:
            warmup, results = asyncio.run(_drive_loadgen(gateway.base_url, prompts, options, round_, arm))
    common = {"arm": arm, "round_": round_, "client": options.client, "scale": options.time_scale}
    return _records(warmup, phase="warmup", **common) + _records(results, phase="measure", **common)


def environment(options: GaieOptions) -> dict[str, Any]:
    """Where and how the numbers were made: commit, cores, load, versions, the calibration's sources."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    from services.runtime.gateway import envoy_binary

    try:
        envoy = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    except OSError as exc:
        envoy = f"unavailable: {exc}"
    return {
        "commit": commit,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "envoy": envoy,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "sim_config": asdict(sim_config(options)),
        "calibration": sources(options.calibration),
    }


def run_experiment(options: GaieOptions, out_dir: Path | None = None, progress: Progress | None = None):
    """Every round of every arm; writes raw records and the environment to ``out_dir`` when given."""
    from loadgen.gaie_stats import summarize

    options.validate()
    say = progress or (lambda _: None)
    env = environment(options)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for round_ in range(options.rounds):
        arms = list(options.arms)
        shift = round_ % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            t = time.perf_counter()
            arm_records = run_arm(options, arm, round_)
            errors = sum(1 for r in arm_records if r["error"])
            say(f"round {round_ + 1}/{options.rounds} {arm}: {len(arm_records)} requests, {errors} errors, "
                f"{time.perf_counter() - t:.0f} s")  # fmt: skip
            records.extend(arm_records)
    env["duration_s"] = time.perf_counter() - started
    env["load_average_at_end"] = os.getloadavg()
    summary = summarize(records, options)
    if out_dir is not None:
        write_results(out_dir, records, env, summary)
    return records, env, summary


def write_results(out_dir: Path, records: list[dict[str, Any]], env: dict[str, Any], summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(out_dir / "records.jsonl.gz", "wt") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    (out_dir / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
