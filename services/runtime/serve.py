"""``kubescribe serve X``: one service in the foreground until SIGTERM, the container's command.

Readiness is announced twice: a ``X ready`` line on stderr for people, and the file named by
``KUBESCRIBE_READY_FILE`` for the embedded stack's supervisor (removed again on exit). Non-ingest
services get the Prometheus exporter here; ingest serves ``/metrics`` itself. Run as
``python -m services.runtime.serve X``, it imports only this module and that service, not every
command module of the CLI, so a service process starts faster and a broken unrelated module
cannot keep it from starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
from enum import StrEnum
from pathlib import Path

import typer

from services.common.logs import configure_logging


class Service(StrEnum):
    """The services a container (or the embedded stack) can run."""

    ingest = "ingest"
    dispatcher = "dispatcher"
    summarizer = "summarizer"
    notifier = "notifier"


async def _serve(service: Service) -> None:
    """Run one service until SIGTERM/SIGINT; signal readiness through a file and a log line."""
    from services.common.metrics_server import start_metrics_server

    module = importlib.import_module(f"services.{service.value}.app")
    ready = asyncio.Event()
    metrics = start_metrics_server() if service is not Service.ingest else None  # ingest serves /metrics itself
    task = asyncio.create_task(module.serve(ready=ready), name=f"serve-{service.value}")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    ready_file = os.environ.get("KUBESCRIBE_READY_FILE")
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            if ready_file:
                Path(ready_file).parent.mkdir(parents=True, exist_ok=True)
                Path(ready_file).write_text(f"{os.getpid()}\n")
            extra = f", metrics {metrics.url}" if metrics else ""
            typer.echo(f"{service.value} ready (pid {os.getpid()}{extra})", err=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        waiter.cancel()
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)
        if metrics:
            metrics.stop()
        from services.common.telemetry import shutdown_telemetry

        shutdown_telemetry()


def serve(service: Service = typer.Argument(..., help="ingest | dispatcher | summarizer | notifier")) -> None:
    """Run one service in the foreground until SIGTERM or Ctrl-C (the container's command)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(service))


def main() -> None:
    """``python -m services.runtime.serve X``: same logging and exit conventions as ``kubescribe``."""
    from services.cli import err_console
    from services.common.errors import KubescribeError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_logging()
    app = typer.Typer(name="kubescribe serve", pretty_exceptions_enable=False, add_completion=False)
    app.command()(serve)  # the only command: ``python -m services.runtime.serve dispatcher``
    try:
        app()
    except KubescribeError as exc:
        err_console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
