"""``kubescribe loadgen``: make traces, replay them open-loop, benchmark an LLM endpoint, report.

Examples::

    # the paper's Kueue experiment: a burst of 32 jobs, half medium, half large-v3
    kubescribe loadgen make --preset kueue -o kueue.jsonl
    # its local analogue (only the bundled model is offline): same shape, tiny.en
    kubescribe loadgen make --preset kueue --models tiny.en,tiny.en -o kueue-local.jsonl
    # Poisson arrivals at 2/s of 10 s tones, seeded
    kubescribe loadgen make --count 100 --arrivals poisson --rate 2 --audio tone --duration 10 -o p.jsonl

    kubescribe loadgen replay kueue.jsonl --url http://127.0.0.1:8080 --nats nats://127.0.0.1:4222 \\
        --name kueue-on -o kueue-on.jsonl
    kubescribe loadgen replay kueue.jsonl --direct --nats nats://127.0.0.1:4222 --until transcribed

    kubescribe loadgen llm --url http://127.0.0.1:8000/v1 --concurrency 5,10,15,20 --requests 50 \\
        --name gateway -o gateway.jsonl
    kubescribe loadgen report kueue-off.jsonl kueue-on.jsonl -o report/

Exit status: 0 on success, 2 on a usage error, 1 when the run failed or any item did not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadgen.gaie_cli import gaie_command
from loadgen.results import ItemResult, LlmResult, RunHeader
from services.common.errors import KubescribeError
from services.common.events import TENANT_PATTERN

loadgen_app = typer.Typer(
    help="Trace replays and LLM benchmarks that reproduce the paper's experiments.", no_args_is_help=True
)
console = Console(stderr=True)

# Options shared by several commands, declared once (each readable from the environment).
NatsUrl = Annotated[
    str | None,
    typer.Option("--nats", envvar="KUBESCRIBE_NATS_URL", help="NATS URL: outcomes, and direct publishing."),
]
IngestUrl = Annotated[
    str | None, typer.Option("--url", envvar="KUBESCRIBE_INGEST_URL", help="Ingest base URL (HTTP uploads).")
]
LlmUrl = Annotated[
    list[str] | None,
    typer.Option(
        "--url",
        envvar="KUBESCRIBE_LLM_BASE_URL",
        help="OpenAI-compatible base URL (ending in /v1); repeat for several replicas routed by --routing.",
    ),
]
ApiToken = Annotated[str | None, typer.Option("--token", envvar="KUBESCRIBE_API_TOKEN", help="Bearer token.")]
RunName = Annotated[str | None, typer.Option("--name", help="Label of this run in reports (default: file stem).")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Results JSONL (default: <name>.results.jsonl).")]
Seed = Annotated[int, typer.Option("--seed", envvar="KUBESCRIBE_LOADGEN_SEED", help="Random seed.")]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="KUBESCRIBE_LOADGEN_CACHE_DIR", help="Rendered audio cache."),
]


class RichProgress:
    """The engines' progress hooks, drawn with rich (on stderr, so stdout stays parseable)."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.max_lag = 0.0
        self.failed = 0

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def _task(self, name: str, total: int) -> int:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total, info="")
        return self.tasks[name]

    def on_prepare(self, total: int) -> None:
        self._task("audio", total)

    def on_prepared(self, done: int) -> None:
        self.bar.update(self.tasks["audio"], completed=done)

    def on_start(self, header: RunHeader) -> None:
        if header.mode == "replay":
            self._task("sent", header.items)
            self._task("done", header.items)

    def on_sent(self, item_id: str, lag_s: float) -> None:
        self.max_lag = max(self.max_lag, lag_s)
        self.bar.update(self.tasks["sent"], advance=1, info=f"max lag {self.max_lag * 1000:.1f} ms")

    def on_result(self, result: ItemResult | LlmResult) -> None:
        if isinstance(result, LlmResult):
            task = self.tasks[f"c={result.concurrency}"]
            self.failed += result.error is not None
        else:
            task = self.tasks["done"]
            self.failed += result.outcome in ("failed", "rejected", "timeout")
        self.bar.update(task, advance=1, info=f"{self.failed} failed" if self.failed else "")

    def on_phase(self, description: str) -> None:
        level = description.split()[-1]
        self._task(f"c={level}", self._per_level)

    def on_end(self, stopped: str, duration_s: float) -> None:
        console.print(f"run {stopped} after {duration_s:.1f} s")

    _per_level = 0


def _run(coro):
    """Run a coroutine; an expected failure is one red line and exit 1, never a traceback."""
    try:
        return asyncio.run(coro)
    except KubescribeError as exc:
        console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@loadgen_app.command("make")
def make_command(
    preset: Annotated[str | None, typer.Option("--preset", help="kueue | das | llm (the paper's experiments).")] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="Items (presets have defaults).")] = None,
    arrivals: Annotated[str, typer.Option("--arrivals", help="poisson | constant | burst.")] = "poisson",
    rate: Annotated[float, typer.Option("--rate", min=0.0001, help="Arrivals per second.")] = 1.0,
    burst_size: Annotated[int | None, typer.Option("--burst-size", min=1, help="Items per burst.")] = None,
    burst_interval: Annotated[float, typer.Option("--burst-interval", min=0, help="Seconds between bursts.")] = 10.0,
    audio: Annotated[str, typer.Option("--audio", help="speech (espeak-ng) | tone | noise.")] = "speech",
    duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds of tone/noise audio.")] = 10.0,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models, round-robin.")] = None,
    tenants: Annotated[str, typer.Option("--tenants", help="Comma-separated tenants, round-robin.")] = "default",
    seed: Seed = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Trace file (default: stdout).")] = None,
) -> None:
    """Write a trace (JSON Lines): a preset, or COUNT arrivals of a pattern."""
    from loadgen import make
    from loadgen.trace import dump_trace, write_trace

    if arrivals not in ("poisson", "constant", "burst"):
        raise typer.BadParameter(f"{arrivals!r}: use poisson, constant or burst", param_hint="--arrivals")
    if audio not in ("speech", "tone", "noise"):
        raise typer.BadParameter(f"{audio!r}: use speech, tone or noise", param_hint="--audio")
    if preset is not None and preset not in make.PRESETS:
        raise typer.BadParameter(f"{preset!r}: choose one of {', '.join(make.PRESETS)}", param_hint="--preset")
    bad_tenants = [t for t in _split(tenants) if not re.match(TENANT_PATTERN, t)]
    if bad_tenants:
        raise typer.BadParameter(
            f"{', '.join(bad_tenants)}: a tenant is a DNS label (lower-case letters, digits, '-')",
            param_hint="--tenants",
        )
    try:
        if preset:
            items = make.preset(
                preset,
                seed=seed,
                count=count,
                models=_split(models) or None,
                audio=audio,  # type: ignore[arg-type]
            )
        else:
            items = make.make_trace(
                count or 20,
                pattern=arrivals,  # type: ignore[arg-type]
                rate=rate,
                seed=seed,
                audio=audio,  # type: ignore[arg-type]
                models=_split(models) or [None],
                tenants=_split(tenants) or ["default"],
                burst_size=burst_size,
                burst_interval_s=burst_interval,
                duration_s=duration,
            )
    except KubescribeError as exc:
        raise typer.BadParameter(str(exc)) from None
    if output is None:
        sys.stdout.write(dump_trace(items))
    else:
        write_trace(output, items)
        console.print(f"wrote {len(items)} items to {output}")


@loadgen_app.command("replay")
def replay_command(
    trace: Annotated[Path, typer.Argument(help="Trace file (JSON Lines).")],
    url: IngestUrl = None,
    nats_url: NatsUrl = None,
    direct: Annotated[bool, typer.Option("--direct", help="Publish over NATS instead of HTTP upload.")] = False,
    token: ApiToken = None,
    name: RunName = None,
    output: Output = None,
    deadline: Annotated[float, typer.Option("--deadline", min=1, help="Seconds before giving up.")] = 600.0,
    until: Annotated[
        str, typer.Option("--until", help="summarized | transcribed: what completes an item.")
    ] = "summarized",
    collect: Annotated[bool, typer.Option("--collect/--no-collect", help="Follow outcomes (needs NATS).")] = True,
    cache_dir: CacheDir = None,
) -> None:
    """Replay TRACE open-loop against ingest (HTTP) or NATS, collect outcomes, write results JSONL."""
    if until not in ("summarized", "transcribed"):
        raise typer.BadParameter(f"{until!r}: use summarized or transcribed", param_hint="--until")
    if not direct and not url:
        raise typer.BadParameter("give --url (ingest) or --direct with --nats", param_hint="--url")
    if (direct or collect) and not nats_url:
        raise typer.BadParameter(
            "a NATS URL is needed to publish directly or to collect outcomes (or pass --no-collect)",
            param_hint="--nats",
        )
    run_name = name or trace.stem
    out = output or Path(f"{run_name}.results.jsonl")
    code = _run(_replay(trace, url, nats_url, direct, token, run_name, out, deadline, until, collect, cache_dir))
    raise typer.Exit(code)


async def _connect(url: str):
    """Connect, or fail in bounded time: ``connect`` keeps retrying an absent server forever
    (it reconnects without limit), which for a command line is a hang, not an error."""
    from services.common.errors import ConfigurationError
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings

    settings = NatsSettings(url=url)
    timeout_s = 2 * settings.connect_timeout
    try:
        return await asyncio.wait_for(connect(settings, name="kubescribe-loadgen"), timeout_s)
    except TimeoutError:
        raise ConfigurationError(
            f"cannot reach NATS at {url} within {timeout_s:g} s; start one with `kubescribe up` "
            "or set --nats / KUBESCRIBE_NATS_URL"
        ) from None


async def _replay(trace, url, nats_url, direct, token, name, out, deadline, until, collect, cache_dir) -> int:
    from loadgen.replay import HttpTarget, NatsTarget, ReplayOptions, replay
    from loadgen.results import write_run
    from loadgen.trace import read_trace
    from services.common.topology import ensure_topology

    items = read_trace(trace)
    nc = await _connect(nats_url) if nats_url else None
    try:
        js = nc.jetstream() if nc else None
        if js is not None:
            await ensure_topology(js)
        target = NatsTarget(js, description=nats_url) if direct else HttpTarget(url, token=token)
        options = ReplayOptions(
            name=name,
            deadline_s=deadline,
            until=until,
            collect=collect,
            cache_dir=cache_dir,
            base_dir=trace.parent,
            trace=str(trace),
            return_on_cancel=True,
        )
        try:
            with RichProgress() as progress:
                run = await replay(items, target, js=js, options=options, progress=progress)
        finally:
            await target.aclose()
    finally:
        if nc:
            with contextlib.suppress(Exception):
                await nc.drain()
    write_run(out, run)
    if run.footer and run.footer.stopped == "interrupted":
        console.print(f"interrupted: partial results in {out}")
        return 130
    bad = [r for r in run.items if r.outcome in ("failed", "rejected", "timeout")]
    console.print(f"results: {out} ({len(run.items) - len(bad)}/{len(run.items)} completed)")
    for result in bad[:10]:
        console.print(f"  [red]{result.id}[/red] {result.outcome}: {result.error or 'no terminal state'}")
    return 1 if bad else 0


@loadgen_app.command("llm")
def llm_command(
    prompts: Annotated[Path | None, typer.Argument(help="Prompt trace (default: the llm preset).")] = None,
    url: LlmUrl = None,
    routing: Annotated[str, typer.Option("--routing", help="Several --url: random | least-loaded.")] = "random",
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", help="Comma-separated levels.")] = "5,10,15,20",
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, help="Requests per level.")] = 50,
    model: Annotated[str | None, typer.Option("--model", envvar="KUBESCRIBE_LLM_MODEL", help="Model name.")] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Completion budget of prompts that set none.")
    ] = 128,
    objective: Annotated[
        str | None, typer.Option("--objective", help="x-gateway-inference-objective header (GAIE).")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="KUBESCRIBE_LLM_API_KEY")] = None,
    name: RunName = None,
    output: Output = None,
    seed: Seed = 0,
) -> None:
    """Benchmark an OpenAI-compatible endpoint: TTFT, ITL and throughput per concurrency level."""
    try:
        levels = [int(part) for part in _split(concurrency)]
    except ValueError:
        raise typer.BadParameter(f"{concurrency!r}: use integers like 5,10,15,20", param_hint="--concurrency") from None
    if not levels or min(levels) < 1:
        raise typer.BadParameter("concurrency levels must be >= 1", param_hint="--concurrency")
    if routing not in ("random", "least-loaded"):
        raise typer.BadParameter(f"{routing!r}: use random or least-loaded", param_hint="--routing")
    urls = url or ["http://127.0.0.1:8000/v1"]
    run_name = name or (prompts.stem if prompts else "llm")
    out = output or Path(f"{run_name}.results.jsonl")
    code = _run(
        _llm(prompts, urls, levels, requests, model, max_tokens, objective, api_key, run_name, out, seed, routing)
    )
    raise typer.Exit(code)


async def _llm(prompts, urls, levels, requests, model, max_tokens, objective, api_key, name, out, seed, routing) -> int:
    from loadgen.llm import LlmOptions, benchmark
    from loadgen.make import make_prompts
    from loadgen.results import write_run
    from loadgen.trace import read_trace

    items = read_trace(prompts) if prompts else make_prompts(100, seed=seed, max_tokens=max_tokens)
    options = LlmOptions(
        name=name,
        concurrencies=levels,
        requests=requests,
        model=model,
        max_tokens=max_tokens,
        api_key=api_key,
        objective=objective,
        routing=routing,
        seed=seed,
    )
    with RichProgress() as progress:
        progress._per_level = requests
        run = await benchmark(urls, items, options, progress=progress)
    write_run(out, run)
    errors = [r for r in run.llm if r.error]
    console.print(f"results: {out} ({len(run.llm) - len(errors)}/{len(run.llm)} ok)")
    for result in errors[:5]:
        console.print(f"  [red]{result.id}[/red]: {result.error}")
    return 1 if errors else 0


@loadgen_app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Results files; the first is the baseline.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for report.md/json and PNGs.")] = Path(
        "report"
    ),
    plots: Annotated[bool, typer.Option("--plots/--no-plots")] = True,
) -> None:
    """Makespan, JCT, waits, TTFT, stage breakdown and throughput; two or more runs side by side."""
    from loadgen.report import write_report
    from loadgen.results import read_run

    try:
        loaded = [read_run(path) for path in runs]
        written = write_report(loaded, output, plots=plots)
    except KubescribeError as exc:
        console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
        raise typer.Exit(1) from None
    sys.stdout.write(written["markdown"].read_text())
    console.print(f"wrote {', '.join(str(p) for p in written.values())}")


loadgen_app.command("gaie")(gaie_command)


def register(app: typer.Typer) -> None:
    from loadgen import paper_cli

    paper_cli.register(loadgen_app)
    app.add_typer(loadgen_app, name="loadgen")
