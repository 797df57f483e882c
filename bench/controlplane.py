"""Control-plane throughput: recordings per second through ingest → NATS → dispatcher → backend →
summarizer when transcription and the LLM cost nothing, and what each service spends per recording.

What is real: nats-server, the ingest HTTP service (upload, probe, Object Store, status, event),
the dispatcher app (planning, status, acks), the transcriber's own ``run_job`` (reads the spec and
the audio object, writes the transcript object and status, publishes TranscriptReady), the
summarizer service (prompt, streamed chat completion, summary object, SummaryReady) and the vLLM
simulator's HTTP path. What is replaced: faster-whisper by an engine that returns a fixed text at
once (:class:`InstantEngine`), the job backend by the in-memory fake (no process or pod per job),
and the LLM by the simulator at zero TTFT/ITL answering ``--summary-tokens`` tokens (default 8; the
summarizer's own default of 256 applies otherwise, and reading that stream costs the summarizer
more than all its other work per recording, see ``bench/summarizer_stream.py``). So the numbers
are the pipeline's own ceiling, not a transcription benchmark.

Baseline measured in the same run: the wall time of transcribing one minute of speech with the
real faster-whisper tiny.en on one core, against which the summed per-recording CPU of the
control plane is reported as a fraction (target < 1 %). Replicas: 1 and 2 of each service
(ingest, dispatcher, summarizer), uploads round-robin over the ingest replicas. The nats-server's
message counts per recording (``/varz``, in and out) come with them: they do not move with the
machine's load, so they show a saved round trip that CPU time on a shared box cannot. The
harness (this process's upload client and the LLM simulator) is timed apart: with it, "cores
busy" (all CPU over the wall time) says whether the box's cores, not a wait, set the throughput.

    python bench/controlplane.py                      # 400 recordings, replicas 1 and 2, 3 rounds
    python bench/controlplane.py --recordings 200 --rounds 1 --replicas 1
    python bench/controlplane.py --replicas 1 --summary-tokens 8,256   # how the summary's length moves it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadgen.audio import synthesize_speech  # noqa: E402
from loadgen.gaie_stats import format_interval, interval  # noqa: E402
from services.common.nats_client import connect  # noqa: E402
from services.common.settings import NatsSettings  # noqa: E402
from services.common.topology import SUMMARIES_STREAM  # noqa: E402
from services.ingest.client import upload_file  # noqa: E402
from services.runtime.nats_server import EmbeddedNatsServer  # noqa: E402
from services.runtime.processes import free_port, wait_until  # noqa: E402
from services.runtime.sim import SimConfig, SimLlmServer  # noqa: E402
from services.runtime.supervisor import ProcessSpec, Supervisor, file_exists, http_ok  # noqa: E402

console = Console()
SPEECH = "The control plane should never be the bottleneck of a speech pipeline."


# --------------------------------------------------------------------------- the stand-ins


class InstantEngine:
    """The transcriber engine's interface (``load``, ``load_times``, ``transcribe``) at zero cost."""

    def __init__(self) -> None:
        self.load_times: dict[str, tuple[int, int]] = {}

    def load(self, name: str | None = None) -> str:
        display = name or "instant"
        self.load_times.setdefault(display, (time.time_ns(), time.time_ns()))
        return display

    def transcribe(self, path: Path, *, model: str | None = None, language: str | None = None, **options: object):
        """``options``: the per-request fields the real engine takes (word_timestamps, prompt, ...)."""
        from services.common.documents import Segment
        from services.transcriber.engine import Result

        return Result(
            text=SPEECH,
            segments=[Segment(start=0.0, end=1.0, text=SPEECH)],
            language="en",
            audio_s=1.0,
            processing_s=0.0,
        )


async def _dispatcher_role() -> None:
    """One dispatcher replica with the fake backend running the real ``run_job`` on InstantEngine."""
    from services.common.broker import run_until_cancelled
    from services.common.settings import Settings
    from services.dispatcher.app import build_app
    from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend, transcriber_runner

    settings = Settings()
    nc = await connect(settings.nats)
    cluster = FakeCluster(
        slots=int(os.environ.get("BENCH_SLOTS", "4")), runner=transcriber_runner(nc.jetstream(), InstantEngine())
    )
    app = build_app(settings, backend=FakeJobBackend(cluster=cluster))
    ready = asyncio.Event()
    task = asyncio.create_task(run_until_cancelled(app, ready))
    await ready.wait()
    Path(os.environ["KUBESCRIBE_READY_FILE"]).write_text(str(os.getpid()))
    await task


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Arm:
    """One configuration the rounds alternate: replicas of each service, tokens per summary."""

    replicas: int
    summary_tokens: int

    @property
    def label(self) -> str:
        return f"{self.replicas} replica(s), {self.summary_tokens} tokens"


@dataclass
class RunResult:
    replicas: int
    recordings: int
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    kernel_cpu_s: float = 0.0
    """The part of ``cpu_s`` (all services and the nats-server) spent in the kernel: on one box,
    mostly loopback TCP, which faster Python would not shrink and fewer messages would."""
    harness_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU of what a cluster would not run on the same cores: this process (the upload client and the
    SummaryReady polling) and the LLM simulator. Kept apart from ``cpu_s``; with it, the run's CPU
    over its wall time says whether the two cores were the limit."""
    nats_msgs: dict[str, int] = field(default_factory=dict)
    """Messages into (``in``) and out of (``out``) the nats-server during the run, from its
    ``/varz``: unlike CPU time on a shared machine, the same code gives the same count, so a
    change that saves round trips shows even when the machine's noise hides its CPU."""
    summary_tokens: int = 256
    """Output tokens the summarizer asked the simulator for (``KUBESCRIBE_LLM_MAX_TOKENS``); records
    written before the field existed ran at the summarizer's default, 256."""

    @property
    def arm(self) -> Arm:
        return Arm(self.replicas, self.summary_tokens)

    @property
    def per_second(self) -> float:
        return self.recordings / self.wall_s


def _nats_counts(monitor_url: str) -> dict[str, int]:
    varz = httpx.get(f"{monitor_url}/varz", timeout=10).json()
    return {"in": int(varz["in_msgs"]), "out": int(varz["out_msgs"])}


def _cpu(pids: list[int], *, kernel_only: bool = False) -> float:
    """CPU seconds the processes have used (user + system, or only system: time in the kernel)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.system if kernel_only else times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def _summaries(nats: NatsSettings) -> int:
    nc = await connect(nats)
    try:
        return (await nc.jetstream().stream_info(SUMMARIES_STREAM)).state.messages
    finally:
        await nc.close()


async def _upload_all(urls: list[str], audio: Path, count: int, concurrency: int, progress, task) -> None:
    data = audio.read_bytes()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            for attempt in range(5):
                try:
                    await upload_file(clients[i % len(clients)], audio, data=data, idempotency_key=f"bench-{i}")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1 * (attempt + 1))
            progress.advance(task)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for client in clients:
            await client.aclose()


def run_once(
    arm: Arm,
    count: int,
    audio: Path,
    workdir: Path,
    progress,
    command: Callable[[str, list[str]], list[str]] | None = None,
) -> RunResult:
    """One arm's run on a fresh nats-server and fresh services. ``command`` may rewrite each
    service's command line (by process name), e.g. to run it under a profiler."""
    command = command or (lambda name, argv: argv)
    replicas = arm.replicas
    data_dir = Path(tempfile.mkdtemp(prefix=f"cp-{replicas}-{arm.summary_tokens}-", dir=workdir))
    nats = EmbeddedNatsServer(data_dir / "nats")
    supervisor = Supervisor(sink=lambda name, line: None, log_dir=data_dir / "logs")
    sim = SimLlmServer(SimConfig(model="kubescribe-sim", default_max_tokens=8, max_num_seqs=256), isolated=True)
    try:
        nats.start()
        sim.start()
        env = {
            "KUBESCRIBE_NATS_URL": nats.url,
            "KUBESCRIBE_LLM_BASE_URL": sim.base_url,
            "KUBESCRIBE_LLM_MODEL": "kubescribe-sim",
            "KUBESCRIBE_DATA_DIR": str(data_dir),
            "KUBESCRIBE_METRICS_PORT": "0",
            "KUBESCRIBE_LOG_LEVEL": "WARNING",
            "KUBESCRIBE_LLM_MAX_TOKENS": str(arm.summary_tokens),
            "KUBESCRIBE_SUMMARIZER_CONCURRENCY": "64",
            "KUBESCRIBE_INGEST_MAX_IN_FLIGHT": "1000000",  # throughput, not admission control, is measured
            "PYTHONPATH": str(REPO),
        }
        urls = []
        for i in range(replicas):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            urls.append(url)
            supervisor.start(
                ProcessSpec(
                    f"ingest-{i}",
                    command(f"ingest-{i}", [sys.executable, "-m", "services.runtime.serve", "ingest"]),
                    env={**env, "KUBESCRIBE_INGEST_PORT": str(port), "KUBESCRIBE_INGEST_HOST": "127.0.0.1"},
                    ready=http_ok(f"{url}/readyz"),
                )
            )
        for role, argv in (
            ("dispatcher", [sys.executable, __file__, "--role", "dispatcher"]),
            ("summarizer", [sys.executable, "-m", "services.runtime.serve", "summarizer"]),
        ):
            for i in range(replicas):
                ready_file = data_dir / f"{role}-{i}.ready"
                supervisor.start(
                    ProcessSpec(
                        f"{role}-{i}",
                        command(f"{role}-{i}", argv),
                        env={**env, "KUBESCRIBE_READY_FILE": str(ready_file)},
                        ready=file_exists(ready_file),
                    )
                )
        pids = {p.name: p.pid for p in supervisor.processes}
        before = {name: _cpu([pid]) for name, pid in pids.items()}
        before_nats = _cpu([nats.pid])
        control_plane_pids = [*pids.values(), nats.pid]
        before_kernel = _cpu(control_plane_pids, kernel_only=True)
        harness_pids = {"upload client": os.getpid(), "llm simulator": sim.pid}
        before_harness = {name: _cpu([pid]) for name, pid in harness_pids.items() if pid is not None}
        msgs_before = _nats_counts(nats.monitor_url)
        task = progress.add_task(f"{arm.label}: uploading", total=count)
        start = time.monotonic()
        asyncio.run(_upload_all(urls, audio, count, 32, progress, task))
        nats_settings = NatsSettings(url=nats.url)
        wait_until(lambda: asyncio.run(_summaries(nats_settings)) >= count, f"{count} SummaryReady", timeout=600)
        wall = time.monotonic() - start
        progress.remove_task(task)
        cpu = {}
        for name, pid in pids.items():
            service = name.rsplit("-", 1)[0]
            cpu[service] = cpu.get(service, 0.0) + _cpu([pid]) - before[name]
        cpu["nats-server"] = _cpu([nats.pid]) - before_nats
        kernel = _cpu(control_plane_pids, kernel_only=True) - before_kernel
        harness = {name: _cpu([harness_pids[name]]) - spent for name, spent in before_harness.items()}
        msgs = {k: v - msgs_before[k] for k, v in _nats_counts(nats.monitor_url).items()}
        return RunResult(replicas, count, wall, cpu, kernel, harness, msgs, arm.summary_tokens)
    finally:
        supervisor.stop_all()
        sim.stop()
        nats.stop()


def transcription_floor(audio_dir: Path) -> float:
    """Seconds the real tiny.en takes for one minute of speech on one core (the baseline)."""
    from services.transcriber.engine import Engine

    minute = audio_dir / "minute.wav"
    synthesize_speech(" ".join([SPEECH] * 14), minute)  # ~60 s of espeak speech
    engine = Engine()
    engine.load()
    result = engine.transcribe(minute)
    return result.processing_s * 60.0 / result.audio_s


def _ms_per_recording(cpu_by_run: list[dict[str, float]], recordings: int) -> dict[str, float]:
    """Mean CPU milliseconds per recording of each process, over the runs of one arm."""
    return {name: statistics.mean(run[name] for run in cpu_by_run) * 1000 / recordings for name in cpu_by_run[0]}


def summarize(results: list[RunResult], arms: list[Arm], recordings: int, floor_s: float) -> dict[str, dict]:
    """Per arm (replicas, summary tokens): rates, CPU per recording by process, kernel share, cores busy, the ceiling.

    The ceiling is the rate at which this box's cores would be used up by the CPU a recording
    costs here (``cores × 1000 / ms``), with and without the harness on the same cores: when
    "cores busy" is near the core count, the measured rate sits at that ceiling, and the way to a
    higher rate is fewer milliseconds per recording, not more replicas.
    """
    cores = os.cpu_count() or 1
    summary = {}
    for arm in arms:
        runs = [x for x in results if x.arm == arm]
        per_service = _ms_per_recording([x.cpu_s for x in runs], recordings)
        harness = _ms_per_recording([x.harness_cpu_s for x in runs], recordings)
        total_ms = sum(per_service.values())
        summary[arm.label] = {
            "replicas": arm.replicas,
            "summary_tokens": arm.summary_tokens,
            "rates": [x.per_second for x in runs],
            "rate_interval": interval([x.per_second for x in runs]),
            "control_plane_ms_interval": interval([sum(x.cpu_s.values()) * 1000 / recordings for x in runs]),
            "cpu_ms": per_service,
            "kernel_share": statistics.mean(x.kernel_cpu_s / sum(x.cpu_s.values()) for x in runs),
            "nats_msgs_per_recording": {
                k: statistics.mean(x.nats_msgs[k] for x in runs) / recordings for k in ("in", "out")
            },
            "harness_cpu_ms": harness,
            "cores_busy": statistics.mean(
                (sum(x.cpu_s.values()) + sum(x.harness_cpu_s.values())) / x.wall_s for x in runs
            ),
            "ceiling_per_s": cores * 1000 / (total_ms + sum(harness.values())),
            "ceiling_without_harness_per_s": cores * 1000 / total_ms,
            "fraction_of_floor": total_ms / 1000 / floor_s,
        }
    return summary


def print_report(summary: dict[str, dict], recordings: int, rounds: int, floor_s: float) -> None:
    """Two tables: what the pipeline did, and what each process spent per recording."""
    cores = os.cpu_count()
    rates = Table(title=f"control plane: {recordings} recordings per run, {rounds} round(s), {cores} cores")
    for column in (
        "replicas, tokens per summary",
        "recordings/s (mean [95 % CI])",
        "cores busy",
        "CPU-bound ceiling/s",
        "NATS msgs in / out",
    ):
        rates.add_column(column)
    for label, row in summary.items():
        rates.add_row(
            label,
            format_interval(row["rate_interval"], ".0f"),
            f"{row['cores_busy']:.2f} of {cores}",
            f"{row['ceiling_per_s']:.0f} ({row['ceiling_without_harness_per_s']:.0f} without the harness)",
            f"{row['nats_msgs_per_recording']['in']:.1f} / {row['nats_msgs_per_recording']['out']:.1f}",
        )
    console.print(rates)
    cpu = Table(title="CPU ms per recording")
    cpu.add_column("process")
    for label in summary:
        cpu.add_column(label, justify="right")
    first = next(iter(summary.values()))
    for name in first["cpu_ms"]:
        cpu.add_row(name, *(f"{row['cpu_ms'][name]:.2f}" for row in summary.values()))
    cpu.add_row(
        "[b]control plane[/b] [95 % CI]",
        *(f"[b]{format_interval(row['control_plane_ms_interval'], '.1f')}[/b]" for row in summary.values()),
    )
    cpu.add_row("  of it in the kernel", *(f"{row['kernel_share']:.0%}" for row in summary.values()))
    cpu.add_row("  of a 1-min transcription", *(f"{row['fraction_of_floor']:.2%}" for row in summary.values()))
    for name in first["harness_cpu_ms"]:
        cpu.add_row(f"harness: {name}", *(f"{row['harness_cpu_ms'][name]:.2f}" for row in summary.values()))
    console.print(cpu)
    console.print(f"baseline: tiny.en transcribes one minute of speech in {floor_s:.2f} s on one core (same run)")
    labels = list(summary)
    base = statistics.mean(summary[labels[0]]["rates"])
    for label in labels[1:]:
        console.print(
            f"throughput ratio {label} vs {labels[0]}: {statistics.mean(summary[label]['rates']) / base:.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=400)
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--summary-tokens", default="8", help="tokens the stand-in LLM answers per summary (a comma list alternates)"
    )
    parser.add_argument("--role", choices=["dispatcher"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    if args.role == "dispatcher":
        asyncio.run(_dispatcher_role())
        return 0
    arms = [Arm(int(r), int(t)) for r in args.replicas.split(",") for t in args.summary_tokens.split(",")]
    with tempfile.TemporaryDirectory(prefix="kubescribe-cp-") as tmp:
        workdir = Path(tmp)
        audio = workdir / "one-second.wav"
        synthesize_speech("Hello control plane.", audio)
        floor_s = transcription_floor(workdir)
        results: list[RunResult] = []
        with Progress(console=console, transient=True) as progress:
            for _ in range(args.rounds):  # interleaved: machine noise hits every arm alike
                for arm in arms:
                    results.append(run_once(arm, args.recordings, audio, workdir, progress))
    summary = summarize(results, arms, args.recordings, floor_s)
    print_report(summary, args.recordings, args.rounds, floor_s)
    if args.json:
        args.json.write_text(
            json.dumps({"floor_s": floor_s, "summary": summary, "runs": [x.__dict__ for x in results]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
