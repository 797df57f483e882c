"""``kubescribe loadgen gaie``: the paper's GAIE experiment through a real Envoy gateway.

Examples::

    # the paper's counts (256 requests per level), 5 rounds, three arms; writes docs/results/gaie/
    kubescribe loadgen gaie --rounds 5 -o docs/results/gaie
    # a CI-sized run, two arms, another calibration, one assumption changed
    kubescribe loadgen gaie --scale 0.05 --rounds 2 --arms random,picker --calibration l4-qwen2.5-7b \\
        --set kv_cache_blocks=4000 -o /tmp/gaie
    # the same through GuideLLM (make guidellm first)
    kubescribe loadgen gaie --client guidellm --scale 0.1 --rounds 1

Exit status: 0 on success, 2 on a usage error, 1 when the run failed or requests errored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def gaie_command(
    arms: Annotated[str, typer.Option("--arms", help="random,picker,least-request")] = "random,picker,least-request",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds (fresh gateway each).")] = 5,
    scale: Annotated[float, typer.Option("--scale", min=0.001, max=1.0, help="Shrinks request counts.")] = 1.0,
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", help="Comma-separated levels.")] = "5,10,15,20",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Simulator replicas behind Envoy.")] = 2,
    calibration: Annotated[str, typer.Option("--calibration", help="Profile in sim/calibration.json.")] = (
        "a100-40gb-qwen2.5-7b"
    ),
    overrides: Annotated[list[str] | None, typer.Option("--set", help="SimConfig key=value (repeatable).")] = None,
    time_scale: Annotated[float, typer.Option("--time-scale", min=0.01, max=1.0, help="Sim speed-up.")] = 0.25,
    client: Annotated[str, typer.Option("--client", help="loadgen | guidellm")] = "loadgen",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Results directory.")] = None,
) -> None:
    """Envoy RANDOM vs the local endpoint picker (and LEAST_REQUEST) on the paper's workload, with intervals."""
    from loadgen.errors import TargetError
    from loadgen.gaie import GaieOptions, run_experiment
    from loadgen.gaie_report import write_report
    from services.common.errors import KubescribeError

    values = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: use key=value, e.g. kv_cache_blocks=8000", param_hint="--set")
        values[key.strip()] = _value(raw)
    try:
        levels = tuple(int(x) for x in concurrency.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{concurrency!r}: use integers like 5,10,15,20", param_hint="--concurrency") from None
    options = GaieOptions(
        arms=tuple(a.strip() for a in arms.split(",") if a.strip()),
        rounds=rounds,
        scale=scale,
        concurrencies=levels,
        replicas=replicas,
        calibration=calibration,
        overrides=values,
        time_scale=time_scale,
        client=client,
        seed=seed,
    )
    try:
        options.validate()
        records, env, summary = run_experiment(options, output, progress=lambda line: console.print(line))
        if output is not None:
            write_report(output, summary, env)
    except (TargetError, KubescribeError, ValueError, OSError, RuntimeError) as exc:
        console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
        raise typer.Exit(1) from None
    for arm, levels_ in summary["ttft"].items():
        cells = "  ".join(
            f"c={lv}: p99 {v['ttft_p99_s']['mean']:.2f} [{v['ttft_p99_s']['low']:.2f}, {v['ttft_p99_s']['high']:.2f}]"
            for lv, v in levels_.items()
        )
        console.print(f"{arm:14s} {cells}")
    for arm, change in summary["p99_change_vs_random"].items():
        if "largest_cut" in change:
            best = change["largest_cut"]
            console.print(
                f"{arm} vs random: p99 {best['mean']:+.0%} [{best['low']:+.0%}, {best['high']:+.0%}]"
                f" at c={best['concurrency']} -> {change['verdict']}"
            )
    errors = sum(1 for r in records if r["error"])
    raise typer.Exit(1 if errors else 0)
