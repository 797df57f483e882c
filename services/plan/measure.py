"""Measuring the local backend's service times on this machine, for the local simulator.

Three numbers, each timed on the real code in one process per core at the same time (a slot's
speed when every slot is busy, which is what a replay's backlog sees): ``local.spawn_s`` (a
transcriber process starting, importing what ``services.transcriber`` imports and loading the
model: what a warm slot hides), and ``local.per_file_s`` + ``local.rtf`` (a least-squares line
through the real :class:`services.transcriber.engine.Engine` transcribing espeak-ng clips of
several lengths on one thread). The result is a calibration file whose every entry says where,
when and under what load it was measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.plan.calibration import Calibration, Entry
from services.plan.errors import PlanError

WORKER_CODE = """
import json, sys, time
import psutil
import services.common.nats_client, services.transcriber.job
from services.common.settings import Settings
from services.transcriber.engine import Engine
engine = Engine(Settings().transcriber)
engine.load()
ready = time.time() - psutil.Process().create_time()
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
times = []
for path in sys.argv[1:]:
    started = time.perf_counter()
    engine.transcribe(__import__("pathlib").Path(path))
    times.append(time.perf_counter() - started)
print(json.dumps({"ready_s": ready, "times": times}))
"""
"""One slot's transcriber: start, import what ``services.transcriber`` imports, load the model
(timed from the process's creation), wait for the go, then transcribe the clips it was given."""
CLIP_SENTENCES = (1, 3, 6, 10)


def _clips(cache_dir: Path | None) -> list[Path]:
    from loadgen.audio import materialize
    from loadgen.make import SENTENCES
    from loadgen.trace import SpeechAudio

    return [
        materialize(SpeechAudio(text=" ".join(SENTENCES[i % len(SENTENCES)] for i in range(n))), cache_dir=cache_dir)
        for n in CLIP_SENTENCES
    ]


def measure(
    *, repeats: int = 3, cache_dir: Path | None = None, note: Callable[[str], None] = lambda _: None
) -> Calibration:
    """Time the transcriber here; returns the ``local.*`` entries (on top of the defaults)."""
    from loadgen.audio import wav_duration

    env = {**os.environ, "OMP_NUM_THREADS": "1", "KUBESCRIBE_WHISPER_CPU_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    parallel = os.cpu_count() or 1
    clips = [(path, wav_duration(path) or 0.0) for path in _clips(cache_dir)]
    spawns, durations, times = [], [], []
    for repeat in range(repeats):
        # One process per core, all at once, as the slots run in a replay's backlog; each gets
        # the clips in a different order so every clip is timed beside different neighbours.
        orders = [[clips[(k + repeat + i) % len(clips)] for k in range(len(clips))] for i in range(parallel)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_CODE, *(str(p) for p, _ in order)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )
            for order in orders
        ]  # fmt: skip
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise PlanError(f"a transcriber worker did not start (exit {worker.wait()}); run it by hand to see why")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker, order in zip(workers, orders, strict=True):
            output, _ = worker.communicate(timeout=600)
            if worker.returncode != 0:
                raise PlanError(f"the transcriber worker failed (exit {worker.returncode}): {output[-300:]}")
            result = json.loads(output.strip().splitlines()[-1])
            spawns.append(result["ready_s"])
            durations += [audio_s for _, audio_s in order]
            times += result["times"]
        note(f"round {repeat + 1}: {parallel} transcribers, ready in {max(spawns[-parallel:]):.1f} s")
    slope, intercept = np.polyfit(np.asarray(durations), np.asarray(times), 1)
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
            max(0.0, float(intercept)), f"{where}: intercept of a line through {len(times)} timed clips ({spread})", "s"
        ),
        "local.rtf": Entry(
            float(slope), f"{where}: slope of the same line (tiny.en, int8, 1 thread, {parallel} at once)"
        ),
    }
    return Calibration({**Calibration.default().entries, **entries})


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
