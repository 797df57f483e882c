"""Measuring the local backend's service times on this machine, for the local simulator.

Four numbers, each timed on the real code in one process per core at the same time (a slot's
speed when every slot is busy, which is what a replay's backlog sees): ``local.spawn_s`` (a
transcriber process starting, importing what ``services.transcriber`` imports and loading the
model: what a warm slot hides), and ``local.per_file_s`` + ``local.rtf`` (a Theil–Sen line
through the real :class:`services.transcriber.engine.Engine` transcribing espeak-ng clips of
several lengths on one thread, after each process's first), and ``local.first_file_s`` (what a
process's first transcription takes beyond that line). The result is a calibration file whose
every entry says where, when and under what load it was measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.plan.calibration import Calibration, Entry
from services.plan.errors import PlanError

WORKER_CODE = """
import json, sys, time
import services.common.nats_client, services.transcriber.job
from services.common.settings import Settings
from services.transcriber.engine import Engine
engine = Engine(Settings().transcriber)
engine.load()
ready_at = time.time()
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
times = []
for path in sys.argv[1:]:
    started = time.perf_counter()
    engine.transcribe(__import__("pathlib").Path(path))
    times.append(time.perf_counter() - started)
print(json.dumps({"ready_at": ready_at, "times": times}))
"""
"""One slot's transcriber: start, import what ``services.transcriber`` imports, load the model,
say when it was ready, wait for the go, then transcribe the clips it was given.

The start-up is timed from just before the parent creates the process to the worker's clock at
ready (one machine, one clock). It used to be timed from the process's creation time as psutil
reports it, which Linux derives from the boot time in whole seconds: every start-up read up to a
second long (0.87 s on the machine it was found on, where starts of 0.85-1.0 s read 1.7-1.8 s),
and the twin made every respawn under Poisson arrivals wait that much longer."""
CLIP_SENTENCES = (1, 3, 6, 10)
"""4.7–41 s of speech. A 14-sentence clip (58 s) was tried: it flattened the line (slope
0.023–0.025 instead of 0.033–0.039), and in the replays on the stack long recordings then took
1.16–1.67× what the line predicted (the twin −14 % to −30 % on the long workloads), against
0.86–0.97× for the line through these four (3 rounds each, `transcribe_wall_s` of the replays). The
engine inside a job on the stack is slower per second of long audio than the bare engine timed
here, which a longer clip cannot show; the steeper line through shorter clips happens to cover
most of that, and the grounding test checks that it still does."""


def _clips(cache_dir: Path | None) -> list[Path]:
    from loadgen.audio import materialize
    from loadgen.make import SENTENCES
    from loadgen.trace import SpeechAudio

    return [
        materialize(SpeechAudio(text=" ".join(SENTENCES[i % len(SENTENCES)] for i in range(n))), cache_dir=cache_dir)
        for n in CLIP_SENTENCES
    ]


def start_worker(clips: list[Path], env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    """A measuring transcriber for ``clips`` and the wall-clock time just before it was created."""
    created = time.time()
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, *(str(p) for p in clips)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    return worker, created


def measure(
    *, repeats: int = 3, cache_dir: Path | None = None, note: Callable[[str], None] = lambda _: None
) -> Calibration:
    """Time the transcriber here; returns the ``local.*`` entries (on top of the defaults)."""
    from loadgen.audio import wav_duration

    env = {**os.environ, "OMP_NUM_THREADS": "1", "KUBESCRIBE_WHISPER_CPU_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    parallel = os.cpu_count() or 1
    clips = [(path, wav_duration(path) or 0.0) for path in _clips(cache_dir)]
    spawns, durations, times = [], [], []
    firsts: list[tuple[float, float]] = []
    for repeat in range(repeats):
        # One process per core, all at once, as the slots run in a replay's backlog; each gets
        # the clips in a different order so every clip is timed beside different neighbours.
        orders = [[clips[(k + repeat + i) % len(clips)] for k in range(len(clips))] for i in range(parallel)]
        started = [start_worker([p for p, _ in order], env) for order in orders]
        workers, created = [w for w, _ in started], [c for _, c in started]
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise PlanError(f"a transcriber worker did not start (exit {worker.wait()}); run it by hand to see why")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker, order, started in zip(workers, orders, created, strict=True):
            output, _ = worker.communicate(timeout=600)
            if worker.returncode != 0:
                raise PlanError(f"the transcriber worker failed (exit {worker.returncode}): {output[-300:]}")
            result = json.loads(output.strip().splitlines()[-1])
            spawns.append(result["ready_at"] - started)
            (_, first_audio_s), *later = order
            firsts.append((first_audio_s, result["times"][0]))
            durations += [audio_s for _, audio_s in later]
            times += result["times"][1:]
        note(f"round {repeat + 1}: {parallel} transcribers, ready in {max(spawns[-parallel:]):.1f} s")
    # A process's first transcription is slower (the model's first run: allocations, page faults):
    # 0.84 s for a 4.7 s clip that takes 0.60 s from then on. Every local job is a fresh process,
    # so the twin charges it once per job, and the line is fitted through the later clips only.
    slope, intercept = theil_sen(durations, times)
    first_extra = [t - (intercept + slope * d) for d, t in firsts]
    where = (
        f"measured here by `kubescribe plan measure` on {platform.node()} ({os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}) at {datetime.now(UTC).isoformat(timespec='seconds')}"
    )
    spread = f"{min(durations):.1f}–{max(durations):.1f} s"
    entries = {
        "local.spawn_s": Entry(
            float(np.median(spawns)), f"{where}: median of {len(spawns)} transcriber starts, {parallel} at once", "s"
        ),
        "local.per_file_s": Entry(
            max(0.0, float(intercept)),
            f"{where}: intercept of a Theil–Sen line through {len(times)} timed clips, each process's first left "
            f"out ({spread}; audio s → s: {_points(durations, times)})",
            "s",
        ),
        "local.rtf": Entry(
            float(slope), f"{where}: slope of the same line (tiny.en, int8, 1 thread, {parallel} at once)"
        ),
        "local.first_file_s": Entry(
            max(0.0, float(np.median(first_extra))),
            f"{where}: median excess of {len(firsts)} processes' first clips over that line", "s",
        ),
    }  # fmt: skip
    return Calibration({**Calibration.default().entries, **entries})


def _points(xs: list[float], ys: list[float]) -> str:
    return ", ".join(f"{x:.1f}→{y:.3f}" for x, y in sorted(zip(xs, ys, strict=True)))


def theil_sen(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Slope and intercept of a line robust to a few slow points: the median of the pairwise
    slopes, then the median residual. One clip slowed by a neighbour's burst tilts a least-squares
    line through eight points; it barely moves these medians."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    spread = x[j] - x[i]
    usable = np.abs(spread) > 1e-9
    if not usable.any():
        raise PlanError("the calibration clips all have the same length: no line can be fitted")
    slope = float(np.median((y[j] - y[i])[usable] / spread[usable]))
    return slope, float(np.median(y - slope * x))


def local_entries(calibration: Calibration) -> dict[str, dict[str, object]]:
    return {k: v for k, v in calibration.to_json().items() if k.startswith("local.")}


def bracket(before: Calibration, after: Calibration) -> Calibration:
    """The mean of two measurements taken either side of a run: on a shared machine the speed of a
    core drifts with other people's load, and the run saw the load in between."""
    entries = dict(before.entries)
    for key, entry in before.entries.items():
        if key.startswith("local.") and key in after.entries:
            value = (entry.value + after.entries[key].value) / 2
            entries[key] = Entry(value, f"mean of two measurements either side of the replay; first: {entry.source}",
                                 entry.unit)  # fmt: skip
    return Calibration(entries)
