"""Transcription makespan on one set of short clips, three ways, in one run.

    (a) floor      faster-whisper in one warm process per core (model loaded before the clock)
    (b) paper      one fresh process per recording (import + model load + transcribe), same parallelism
    (c) kubescribe the dispatcher + local backend, from the first publish to the last TranscriptReady

It prints (c)/(a) (target <= 1.15: kubescribe's overhead over the floor) and (b)/(c)
(target >= 1.3: the gain over the paper's one-job-per-file shape). Each round runs (a), (c)
and (b) back to back and the ratios are taken within the round (the machine is shared: a slow
minute hits all three alike); the means over the rounds come with 95 % bootstrap intervals, and
``--out DIR`` keeps every round (``rounds.jsonl``) and the summary with the run's environment.
It starts its own nats-server and synthesizes its own clips (espeak-ng + sox)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/transcribe.py --clips 24 --rounds 5 --out docs/results/bench/transcribe
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()
_engine = None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


# --- clips -------------------------------------------------------------------------------------
def make_clips(directory: Path, count: int) -> list[Path]:
    from tests.speech import SENTENCES, synthesize

    return [synthesize(SENTENCES[i % len(SENTENCES)], directory / f"clip_{i:03d}.wav") for i in range(count)]


# --- (a) warm processes ------------------------------------------------------------------------
def _warm_init() -> None:
    global _engine
    from services.transcriber.engine import Engine

    _engine = Engine()
    _engine.load()


def _warm_ready(_: int) -> int:
    time.sleep(0.3)  # long enough that every worker takes one of these
    return os.getpid()


def _warm_transcribe(path: str) -> str:
    assert _engine is not None
    return _engine.transcribe(Path(path)).text


def floor(clips: list[Path], parallelism: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(parallelism, initializer=_warm_init) as pool:
        while len(set(pool.map(_warm_ready, range(parallelism), chunksize=1))) < parallelism:
            pass
        with _progress() as progress:
            task = progress.add_task("(a) floor", total=len(clips))
            start = time.perf_counter()
            for _ in pool.imap_unordered(_warm_transcribe, [str(c) for c in clips], chunksize=1):
                progress.advance(task)
            elapsed = time.perf_counter() - start
        pool.close()
        pool.join()
        return elapsed


# --- (b) one process per recording -------------------------------------------------------------
ONE_SHOT = (
    "import sys; from pathlib import Path; from services.transcriber.engine import Engine; "
    "print(Engine().transcribe(Path(sys.argv[1])).text)"
)


async def per_recording(clips: list[Path], parallelism: int) -> float:
    limit = asyncio.Semaphore(parallelism)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with _progress() as progress:
        task = progress.add_task("(b) per-file", total=len(clips))

        async def one(path: Path) -> None:
            async with limit:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", ONE_SHOT, str(path), env=env, stdout=asyncio.subprocess.DEVNULL
                )
                if await process.wait() != 0:
                    raise RuntimeError(f"one-shot transcription of {path} failed")
            progress.advance(task)

        start = time.perf_counter()
        await asyncio.gather(*(one(c) for c in clips))
        return time.perf_counter() - start


# --- (c) kubescribe ----------------------------------------------------------------------------
async def kubescribe(clips: list[Path], parallelism: int, workdir: Path) -> tuple[float, int]:
    from services.common.events import AudioReceived
    from services.common.ids import new_id
    from services.common.messaging import publish_event
    from services.common.nats_client import connect
    from services.common.settings import DispatcherSettings, NatsSettings, Settings
    from services.common.storage import put_bytes
    from services.common.topology import AUDIO_BUCKET, TRANSCRIPT_READY, ensure_topology
    from services.dispatcher.app import serve
    from services.dispatcher.backends.local import LocalJobBackend
    from services.runtime.nats_server import EmbeddedNatsServer
    from tests.speech import duration_of

    os.environ["KUBESCRIBE_TELEMETRY_SPAN_FILE"] = str(workdir / "spans.jsonl")
    with EmbeddedNatsServer(workdir / "nats") as server:
        settings = Settings()
        settings.nats = NatsSettings(url=server.url)  # type: ignore[misc]
        settings.dispatcher = DispatcherSettings(slots=parallelism)  # type: ignore[misc]
        nc = await connect(settings.nats, name="bench")
        js = nc.jetstream()
        await ensure_topology(js)
        events = []
        for path in clips:  # the upload is ingest's cost, not the dispatcher's
            rid = new_id()
            ref = await put_bytes(js, AUDIO_BUCKET, rid, path.read_bytes())
            events.append(AudioReceived(source="bench", recording_id=rid, audio=ref, duration_s=duration_of(path)))
        wanted = {e.recording_id for e in events}
        finished: dict[str, float] = {}
        jobs: set[str] = set()
        done = asyncio.Event()

        async def on_ready(msg) -> None:
            body = json.loads(msg.data)
            if body["recording_id"] in wanted and body["recording_id"] not in finished:
                finished[body["recording_id"]] = time.perf_counter()
                jobs.add(body["job_id"])
                progress.advance(task)
                if len(finished) == len(wanted):
                    done.set()

        await nc.subscribe(TRANSCRIPT_READY, cb=on_ready)
        ready = asyncio.Event()
        service = asyncio.create_task(serve(settings, ready=ready, backend=LocalJobBackend(settings)))
        await ready.wait()
        await asyncio.sleep(5.0)  # let the slots' warm transcribers finish loading: a running service
        with _progress() as progress:
            task = progress.add_task("(c) kubescribe", total=len(clips))
            start = time.perf_counter()
            for event in events:
                await publish_event(js, event)
            await asyncio.wait_for(done.wait(), timeout=600)
            elapsed = max(finished.values()) - start
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
        await nc.drain()
    return elapsed, len(jobs)


def main() -> None:
    from loadgen.gaie_stats import format_interval, interval
    from loadgen.paper import environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="number of short clips (one sentence each)")
    parser.add_argument("--parallelism", type=int, default=os.cpu_count() or 1, help="processes / slots")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a), (c) and (b), ratios paired by round")
    parser.add_argument("--skip-paper", action="store_true", help="skip (b), the slowest run")
    parser.add_argument("--out", type=Path, help="write rounds.jsonl and summary.json here")
    args = parser.parse_args()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-") as tmp:
        workdir = Path(tmp)
        clips = make_clips(workdir / "clips", args.clips)
        from tests.speech import duration_of

        audio_s = sum(duration_of(c) for c in clips)
        console.print(f"{len(clips)} clips, {audio_s:.1f} s of audio, parallelism {args.parallelism}")
        for round_ in range(1, args.rounds + 1):
            a = floor(clips, args.parallelism)
            c, jobs = asyncio.run(kubescribe(clips, args.parallelism, workdir / f"run{round_}"))
            b = asyncio.run(per_recording(clips, args.parallelism)) if not args.skip_paper else float("nan")
            rounds.append({"round": round_, "floor_s": a, "kubescribe_s": c, "paper_s": b, "jobs": jobs,
                           "load_average": os.getloadavg()[0]})  # fmt: skip
            console.print(f"round {round_}: (a) {a:.2f} s  (c) {c:.2f} s  (b) {b:.2f} s  ({jobs} jobs)")
    ca = interval([r["kubescribe_s"] / r["floor_s"] for r in rounds])
    bc = interval([r["paper_s"] / r["kubescribe_s"] for r in rounds])
    table = Table("run", "makespan s, mean [95 % CI]", "x real time")
    for label, key in (("(a) floor: warm process per core", "floor_s"), ("(b) paper: process per recording", "paper_s"),
                       ("(c) kubescribe local backend", "kubescribe_s")):  # fmt: skip
        value = interval([r[key] for r in rounds])
        table.add_row(label, format_interval(value, ".2f"), f"{audio_s / value['mean']:.1f}")
    console.print(table)
    for label, value, target, met in (
        ("(c)/(a)", ca, "<= 1.15", ca["mean"] <= 1.15),
        ("(b)/(c)", bc, ">= 1.3", bc["mean"] >= 1.3),
    ):
        console.print(
            f"{label} = {format_interval(value, '.3f')}  (target {target}) {'[green]ok' if met else '[red]missed'}"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
        summary = {
            "clips": len(clips),
            "audio_s": audio_s,
            "parallelism": args.parallelism,
            "kubescribe_over_floor": ca,
            "paper_over_kubescribe": bc,
            "environment": environment(args.out),
        }
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
