"""The ``kubescribe loadgen paper`` command: run registered paper experiments, or re-render them.

Examples::

    kubescribe loadgen paper                                  # kueue and das (simulated), 5 rounds
    kubescribe loadgen paper ground --rounds 5                # simulator vs real local replays (minutes)
    kubescribe loadgen paper gaie-local                       # the old local GAIE analogue
    kubescribe loadgen paper --render-only --out docs/results/paper
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loadgen.paper import DEFAULT, EXPERIMENTS, load, run

console = Console(stderr=True)


def paper_command(
    experiments: Annotated[
        list[str] | None, typer.Argument(help=f"Which to run: {', '.join(EXPERIMENTS)} (default: kueue das).")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds per number (5 or more to publish).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="First seed.")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory.")] = Path("paper-results"),
    reuse: Annotated[
        bool, typer.Option("--reuse", help="ground: re-predict replays already recorded under --out.")
    ] = False,
    render_only: Annotated[
        bool, typer.Option("--render-only", help="Re-render the results already under --out; run nothing.")
    ] = False,
) -> None:
    """The ICPE'26 paper's experiments: Kueue and DAS simulated at cluster scale, grounded locally."""
    from loadgen.paper_render import markdown, tables

    names = list(experiments or DEFAULT)
    if render_only:
        results = load(out)
    else:
        results = run(names, out, rounds=rounds, seed=seed, note=console.print, reuse=reuse)
        if (out / "summary.md").exists():  # keep what other experiments wrote earlier
            results = {**load(out), **results}
    printer = Console(width=200 if not sys.stdout.isatty() else None)
    for table in tables(results):
        printer.print(table)
    command = (
        "kubescribe loadgen paper " + shlex.join(sys.argv[3:]) if len(sys.argv) > 3 else "kubescribe loadgen paper"
    )
    (out / "summary.md").write_text(markdown(results, command))
    console.print(f"summary: {out / 'summary.md'}")


def register(app: typer.Typer) -> None:
    app.command("paper")(paper_command)
