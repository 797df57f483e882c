"""A 10-minute recording on 2 slots: split into chunks vs the same recording unsplit, in one run.

Both runs go through the dispatcher and the local backend on one embedded nats-server, from the
AudioReceived publish to the TranscriptReady; they differ only in ``split_threshold_s`` (the
default, vs 0: splitting off). The recording is espeak-ng speech of a long known text, so each
transcript is scored with WER against what was said. The machine is shared, so the two runs are
interleaved for ``--rounds`` rounds and the ratio is printed per round. Targets (issue 15):
split <= 0.6x the unsplit completion time, WER within +-0.02 of the unsplit run.

On a saturated machine the wall-clock ratio measures the scheduler, not the split: Linux groups
a session's processes into one autogroup (``/proc/sys/kernel/sched_autogroup_enabled``), so two
chunk processes share the CPU one process would have got. The bench therefore also prints the
CPU critical path (the busiest chunk's CPU seconds, from its ``transcription`` span's
``kubescribe.cpu_s``) against the unsplit run's CPU seconds: the completion-time ratio the split
gives when the slots have their cores, and the total CPU ratio (the split's overhead)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/split.py --minutes 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()

PARAGRAPHS = (
    "Good morning everyone and welcome to the third quarter earnings call. Revenue grew by twelve percent "
    "compared with the same quarter last year, driven mostly by the subscription business in Europe.",
    "Our operating margin improved because we renegotiated the contracts with two of our largest suppliers. "
    "We expect the savings to continue for at least the next four quarters.",
    "The hardware division had a difficult summer. Shipping delays at the port meant that several large orders "
    "arrived late, and some customers postponed their purchases until the autumn.",
    "On the product side, we released the new mobile application in September. It now has more than two "
    "million active users, and the rating in the app stores went up from three to four stars.",
    "We hired one hundred and twenty engineers this quarter, most of them for the cloud platform team. "
    "Hiring will slow down next year, and we will focus on training the people who joined.",
    "Let me say a few words about the balance sheet. We ended the quarter with four hundred million dollars "
    "in cash and no debt, which gives us room to invest when the market recovers.",
    "Looking ahead, we are raising our guidance for the full year. We now expect revenue between one point "
    "two and one point three billion dollars, and a small improvement in the gross margin.",
    "Before we take your questions, I want to thank the teams in the warehouses and the support centres. "
    "They handled a record number of requests during the holiday season without any major outage.",
    "The first question comes from the analyst at the investment bank. She asks whether the price increase "
    "in the spring had any effect on the number of customers who cancelled their subscription.",
    "The answer is that cancellations went up slightly in April and went back to normal by June. Most "
    "customers stayed because the new features in the professional plan were worth the higher price.",
    "The next question is about the competition in Asia. We see more local competitors every year, and we "
    "are answering with lower prices in some markets and with partnerships with local retailers.",
    "Our last question is about the data centre in the north. Construction started in July, the first "
    "building will open next spring, and it will run entirely on wind and solar energy.",
)


def long_text(minutes: float, words_per_minute: float = 172.0) -> str:
    """Paragraphs in a cycle until about ``minutes`` of speech; the known text the WER is scored against."""
    wanted, words, parts = minutes * words_per_minute, 0, []
    while words < wanted:
        paragraph = PARAGRAPHS[len(parts) % len(PARAGRAPHS)]
        parts.append(paragraph)
        words += len(paragraph.split())
    return " ".join(parts)


@dataclass
class Run:
    completion_s: float
    wer: float
    chunks: int
    cpu_path_s: float
    """CPU seconds of the busiest chunk (the whole recording when unsplit)."""
    cpu_total_s: float


async def one_run(audio: Path, text: str, *, split: bool, slots: int, nats_url: str, workdir: Path) -> Run:
    """Completion time, WER, chunks and CPU seconds of one recording through the dispatcher and the local backend."""
    from services.common.events import AudioReceived
    from services.common.ids import new_id
    from services.common.messaging import publish_event
    from services.common.nats_client import connect
    from services.common.settings import DispatcherSettings, NatsSettings, Settings
    from services.common.status import StatusStore
    from services.common.storage import get_bytes, put_bytes
    from services.common.topology import AUDIO_BUCKET, TRANSCRIPT_READY
    from services.dispatcher.app import serve
    from services.dispatcher.backends.local import LocalJobBackend
    from tests.integration._dispatch import wer
    from tests.speech import duration_of

    settings = Settings()
    settings.nats = NatsSettings(url=nats_url)  # type: ignore[misc]
    options: dict = {"slots": slots} if split else {"slots": slots, "split_threshold_s": 0.0}
    settings.dispatcher = DispatcherSettings(**options)  # type: ignore[misc]
    nc = await connect(settings.nats, name="bench-split")
    js = nc.jetstream()
    rid = new_id()
    ref = await put_bytes(js, AUDIO_BUCKET, rid, audio.read_bytes())  # the upload is ingest's cost
    event = AudioReceived(source="bench", recording_id=rid, audio=ref, duration_s=duration_of(audio))
    done = asyncio.Event()
    finished: list[float] = []

    async def on_ready(msg) -> None:
        if json.loads(msg.data)["recording_id"] == rid and not finished:
            finished.append(time.perf_counter())
            done.set()

    sub = await nc.subscribe(TRANSCRIPT_READY, cb=on_ready)
    ready = asyncio.Event()
    backend = LocalJobBackend(settings, env={"KUBESCRIBE_TELEMETRY_SPAN_FILE": str(workdir / "spans.jsonl")})
    durable = f"bench-split-{rid[-8:].lower()}"
    service = asyncio.create_task(serve(settings, ready=ready, backend=backend, durable=durable, deliver_new=True))
    await ready.wait()
    await asyncio.sleep(5.0)  # let the slots' warm transcribers finish loading: a running service
    start = time.perf_counter()
    await publish_event(js, event)
    await asyncio.wait_for(done.wait(), timeout=1800)
    elapsed = finished[0] - start
    # TranscriptReady goes out before the status says transcribed (services/transcriber/job.py):
    # the status, with its chunk count, follows within a moment.
    store = await StatusStore.open(js)
    while (status := await store.get(rid)) is None or status.transcript is None:
        await asyncio.sleep(0.05)
    hypothesis = json.loads(await get_bytes(js, status.transcript))["text"]
    service.cancel()
    await asyncio.gather(service, return_exceptions=True)
    await sub.unsubscribe()
    await js.delete_consumer("AUDIO", durable)
    await nc.drain()
    chunks = max((int(k) for k in status.chunks_done), default=1)
    cpu = await _transcription_cpu(workdir / "spans.jsonl", rid, chunks)
    return Run(elapsed, wer([text], [hypothesis]), chunks, max(cpu), sum(cpu))


async def _transcription_cpu(span_file: Path, recording_id: str, count: int, timeout: float = 30.0) -> list[float]:
    """CPU seconds of each ``transcription`` span of the recording (the processes flush them on exit)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        if span_file.exists():
            for line in span_file.read_text().splitlines():
                span = json.loads(line)
                attributes = span.get("attributes", {})
                if span["name"] == "transcription" and attributes.get("kubescribe.recording_id") == recording_id:
                    found.append(float(attributes.get("kubescribe.cpu_s", float("nan"))))
        if len(found) >= count or time.monotonic() > deadline:
            return found or [float("nan")]
        await asyncio.sleep(0.5)


async def bench(minutes: float, rounds: int, slots: int, workdir: Path) -> list[dict[str, Run]]:
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings
    from services.common.topology import ensure_topology
    from services.runtime.nats_server import EmbeddedNatsServer
    from tests.speech import duration_of, synthesize

    text = long_text(minutes)
    audio = synthesize(text, workdir / "long.wav")
    console.print(f"recording: {duration_of(audio):.1f} s of speech, {len(text.split())} words, {slots} slots")
    results = []
    with EmbeddedNatsServer(workdir / "nats") as server:
        nc = await connect(NatsSettings(url=server.url), name="bench-setup")
        await ensure_topology(nc.jetstream())
        await nc.drain()
        for round_ in range(rounds):
            row: dict[str, Run] = {}
            # alternate which goes first, so a neighbour's load burst does not always hit the same one
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for split in order:
                run = await one_run(audio, text, split=split, slots=slots, nats_url=server.url, workdir=workdir)
                name = "split" if split else "unsplit"
                row[name] = run
                console.print(
                    f"round {round_ + 1} {name:<8} {run.completion_s:7.1f} s  WER {run.wer:.3f}  "
                    f"chunks {run.chunks}  CPU busiest chunk {run.cpu_path_s:.1f} s, total {run.cpu_total_s:.1f} s"
                )
            results.append(row)
    return results


def _mark(ok: bool) -> str:
    return "[green]ok" if ok else "[red]missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthesized recording")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of split and unsplit")
    parser.add_argument("--slots", type=int, default=2, help="local backend slots")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "results" / "split", help="where the raw rounds and summary go"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-split-") as tmp:
        results = asyncio.run(bench(args.minutes, args.rounds, args.slots, Path(tmp)))
    table = Table(
        "round", "unsplit s", "split s", "wall split/unsplit", "CPU path split/unsplit", "CPU total", "WER", "ΔWER"
    )
    for number, row in enumerate(results, 1):
        split, unsplit = row["split"], row["unsplit"]
        ratio = split.completion_s / unsplit.completion_s
        path = split.cpu_path_s / unsplit.cpu_path_s
        delta = split.wer - unsplit.wer
        table.add_row(
            str(number),
            f"{unsplit.completion_s:.1f}",
            f"{split.completion_s:.1f} ({split.chunks} chunks)",
            f"{ratio:.3f} {_mark(ratio <= 0.6)}",
            f"{path:.3f} {_mark(path <= 0.6)}",
            f"{split.cpu_total_s / unsplit.cpu_total_s:.3f}",
            f"{unsplit.wer:.3f} / {split.wer:.3f}",
            f"{delta:+.3f} {_mark(abs(delta) <= 0.02)}",
        )
    console.print(table)
    console.print("targets: split/unsplit <= 0.6, |ΔWER| <= 0.02 (WER: unsplit / split)")
    summary = _write(args, results)
    wall = summary["wall_ratio"]
    console.print(
        f"wall split/unsplit mean {wall['mean']:.3f} [95 % {wall['low']:.3f}, {wall['high']:.3f}] over "
        f"{wall['n']} rounds, load average {summary['load_average'][0]:.1f}; raw rounds in {args.out}"
    )


def _write(args: argparse.Namespace, results: list[dict[str, Run]]) -> dict:
    """Raw rounds (JSONL) and the means with 95 % bootstrap intervals (JSON), for docs/results."""
    from dataclasses import asdict

    from loadgen.gaie_stats import interval

    args.out.mkdir(parents=True, exist_ok=True)
    rows = [{"round": i, **{arm: asdict(run) for arm, run in row.items()}} for i, row in enumerate(results, 1)]
    (args.out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "minutes": args.minutes,
        "slots": args.slots,
        "rounds": len(rows),
        "load_average": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "wall_ratio": interval([r["split"]["completion_s"] / r["unsplit"]["completion_s"] for r in rows]),
        "cpu_path_ratio": interval([r["split"]["cpu_path_s"] / r["unsplit"]["cpu_path_s"] for r in rows]),
        "cpu_total_ratio": interval([r["split"]["cpu_total_s"] / r["unsplit"]["cpu_total_s"] for r in rows]),
        "wer_delta": interval([r["split"]["wer"] - r["unsplit"]["wer"] for r in rows]),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
