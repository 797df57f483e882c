"""The ``kubescribe`` command line.

Examples::

    kubescribe demo                         # embedded stack, bundled samples, transcripts + summaries
    kubescribe up                           # run the embedded stack until Ctrl-C
    kubescribe submit meeting.wav --wait    # upload and print the transcript and summary
    kubescribe status 01JDZ8W3V0R4N8M0Q2K5T7Y9AB
    kubescribe serve ingest                 # one service (a container's command)
    kubescribe sim-llm --ttft 0.2 --itl 0.02
    kubescribe loadgen make --preset kueue -o trace.jsonl
    kubescribe plan --preset paper-kueue --rounds 5
    kubescribe schemas export schemas/

Exit status: 0 on success, 2 on a usage error, 1 on a runtime failure (one readable line).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from rich.console import Console

from services.common.errors import KubescribeError
from services.common.logs import configure_logging

app = typer.Typer(
    name="kubescribe",
    help="Recorded audio to transcripts and summaries, on one machine or on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)

COMMAND_MODULES = (
    "services.common.cli",
    "services.runtime.cli",
    "services.ingest.cli",
    "services.dispatcher.cli",
    "services.transcriber.cli",
    "services.summarizer.cli",
    "loadgen.cli",
    "services.plan.cli",
)
"""Each module has ``register(app)`` adding its commands; the CLI is assembled from them."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    """Entry point: one readable line and exit 1 for an expected failure, never a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_logging()
    _register_commands()
    try:
        app()
    except KubescribeError as exc:
        err_console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
