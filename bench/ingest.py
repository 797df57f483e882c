"""Ingest throughput: HTTP uploads against the floor of a raw nats-py Object Store put.

Starts its own nats-server and ingest process (``python -m services.ingest.app``) on free
ports, then for 100 KiB and 5 MiB WAV recordings at a fixed concurrency measures uploads/s and
p50/p99 latency of:

- ``nats-py put``: ``ObjectStore.put`` of the same bytes (the floor: no HTTP, no probe, no event);
- ``put_stream``: our pipelined Object Store writer alone (what ingest uses underneath);
- ``HTTP ingest``: ``POST /v1/recordings`` end to end (stream, probe, status, AudioReceived).

and prints each one's throughput as a ratio of the floor's, measured in the same round. Over
``--rounds`` the means come with 95 % bootstrap intervals; ``--out DIR`` keeps every round's
latencies (``rounds.jsonl``) and the summary with the run's environment.

    python bench/ingest.py                      # ~1 minute per round on 2 cores
    python bench/ingest.py --rounds 5 --out docs/results/bench/ingest
    python bench/ingest.py --concurrency 16 --small 400 --large 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen.audio import wav_bytes
from loadgen.report import percentile
from services.common.ids import new_id
from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.common.storage import put_stream
from services.common.topology import AUDIO_BUCKET, ensure_topology
from services.runtime.nats_server import EmbeddedNatsServer
from services.runtime.processes import ProcessFailedError, exited, file_tail, free_port, terminate, wait_until
from services.runtime.supervisor import http_ok

console = Console()


def wav(size: int, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV of exactly ``size`` bytes (a quiet sawtooth, so it is not all zeros)."""
    data_bytes = size - 44  # the stdlib's canonical PCM header is 44 bytes
    pattern = b"".join(struct.pack("<h", (i % 200) * 10 - 1000) for i in range(200))
    return wav_bytes((pattern * (data_bytes // len(pattern) + 1))[:data_bytes], rate=rate)


@dataclass
class Result:
    name: str
    size: int
    count: int
    elapsed: float
    latencies: list[float]
    ingest_cpu_s: float = 0.0
    """CPU seconds the ingest process used in this phase (0 for the direct paths)."""
    round: int = 1

    @property
    def rate(self) -> float:
        return self.count / self.elapsed

    def percentile(self, q: float) -> float:
        """Latency quantile (``q`` in 0..1) by the project's one percentile definition."""
        return percentile(self.latencies, q * 100)


async def run(
    name: str, size: int, count: int, concurrency: int, op: Callable[[], Awaitable[None]], progress: Progress
) -> Result:
    task = progress.add_task(f"{name} {size // 1024} KiB", total=count)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - started)
            progress.advance(task)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    progress.remove_task(task)
    return Result(name, size, count, elapsed, latencies)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def bench(args: argparse.Namespace, nats_url: str, ingest_url: str, ingest_pid: int) -> list[Result]:
    nc = await connect(NatsSettings(url=nats_url), name="bench-ingest")
    js = nc.jetstream()
    await ensure_topology(js)
    store = await js.object_store(AUDIO_BUCKET)
    results: list[Result] = []
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=120, limits=limits) as client:
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            for round_, (size, count) in (
                (r, sc) for r in range(1, args.rounds + 1) for sc in ((100 << 10, args.small), (5 << 20, args.large))
            ):
                data = wav(size)

                async def raw_put(data: bytes = data) -> None:
                    await store.put(new_id(), data)

                async def stream_put(data: bytes = data) -> None:
                    async def pieces():
                        for start in range(0, len(data), 64 << 10):
                            yield data[start : start + (64 << 10)]

                    await put_stream(js, AUDIO_BUCKET, new_id(), pieces(), max_bytes=1 << 30)

                async def http_upload(data: bytes = data) -> None:
                    response = await client.post("/v1/recordings", content=data, headers={"Content-Type": "audio/wav"})
                    if response.status_code != 202:
                        raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")

                await http_upload()  # warm-up: connections, imports, first probe
                await raw_put()
                for name, op in (("nats-py put", raw_put), ("put_stream", stream_put), ("HTTP ingest", http_upload)):
                    cpu_before = cpu_seconds(ingest_pid)
                    result = await run(name, size, count, args.concurrency, op, progress)
                    result.round = round_
                    if name == "HTTP ingest":
                        result.ingest_cpu_s = cpu_seconds(ingest_pid) - cpu_before
                    results.append(result)
    await nc.drain()
    return results


def report(results: list[Result], concurrency: int, out: Path | None) -> None:
    from loadgen.gaie_stats import format_interval, interval
    from loadgen.paper import environment

    rounds = max(r.round for r in results)
    table = Table(
        title=f"ingest at concurrency {concurrency}, {rounds} round(s): mean [95 % CI] "
        "(ratio = uploads/s over the nats-py put floor of the same round)"
    )
    for column in ("size", "path", "n/round", "uploads/s", "p50 ms", "p99 ms", "ratio"):
        table.add_column(column, justify="right" if column not in ("path",) else "left")
    floors = {(r.round, r.size): r.rate for r in results if r.name == "nats-py put"}
    summary: dict[str, dict] = {}
    for size, name in dict.fromkeys((r.size, r.name) for r in results):
        runs = [r for r in results if (r.size, r.name) == (size, name)]
        row = {
            "uploads_per_s": interval([r.rate for r in runs]),
            "p50_ms": interval([r.percentile(0.5) * 1000 for r in runs]),
            "p99_ms": interval([r.percentile(0.99) * 1000 for r in runs]),
            "ratio_to_floor": interval([r.rate / floors[r.round, r.size] for r in runs]),
        }
        if name == "HTTP ingest":
            row["ingest_cpu_ms_per_upload"] = interval([r.ingest_cpu_s / r.count * 1000 for r in runs])
        summary[f"{size // 1024} KiB {name}"] = row
        columns = (("uploads_per_s", ".1f"), ("p50_ms", ".1f"), ("p99_ms", ".1f"), ("ratio_to_floor", ".2f"))
        cells = [format_interval(row[key], spec) for key, spec in columns]
        table.add_row(f"{size // 1024} KiB", name, str(runs[0].count), *cells)
    console.print(table)
    for key, row in summary.items():
        if "ingest_cpu_ms_per_upload" in row:
            console.print(f"{key}: ingest CPU {format_interval(row['ingest_cpu_ms_per_upload'], '.2f')} ms per upload")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        lines = [
            {"round": r.round, "size": r.size, "path": r.name, "count": r.count, "elapsed_s": r.elapsed,
             "ingest_cpu_s": r.ingest_cpu_s, "latencies_ms": [round(x * 1000, 2) for x in r.latencies]}
            for r in results
        ]  # fmt: skip
        (out / "rounds.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        document = {"concurrency": concurrency, "rounds": rounds, "summary": summary, "environment": environment(out)}
        (out / "summary.json").write_text(json.dumps(document, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--small", type=int, default=300, help="100 KiB uploads per path")
    parser.add_argument("--large", type=int, default=30, help="5 MiB uploads per path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write rounds.jsonl and summary.json here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-") as tmp:
        work = Path(tmp)
        with EmbeddedNatsServer(work / "nats", log_file=work / "nats.log") as nats_server:
            port = free_port()
            env = {
                **os.environ,
                "KUBESCRIBE_NATS_URL": nats_server.url,
                "KUBESCRIBE_INGEST_PORT": str(port),
                "KUBESCRIBE_TELEMETRY_SPAN_FILE": str(work / "spans.jsonl"),
                # Nothing consumes the uploads here: admission control would refuse them after 100.
                "KUBESCRIBE_INGEST_MAX_IN_FLIGHT": "1000000",
            }
            env.pop("KUBESCRIBE_API_TOKEN", None)
            with open(work / "ingest.log", "wb") as log:
                ingest = subprocess.Popen(
                    [sys.executable, "-m", "services.ingest.app"], env=env, stdout=log, stderr=log
                )
                try:
                    url = f"http://127.0.0.1:{port}"
                    _wait_ready(url, ingest, work / "ingest.log")
                    results = asyncio.run(bench(args, nats_server.url, url, ingest.pid))
                finally:
                    terminate(ingest)
        report(results, args.concurrency, args.out)


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    try:
        wait_until(http_ok(f"{url}/readyz"), "ingest", 30, failed=exited(process, "ingest"), output=file_tail(log))
    except ProcessFailedError as exc:
        raise SystemExit(str(exc)) from exc


if __name__ == "__main__":
    main()
