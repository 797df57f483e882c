"""Measuring the local backend's service times on this machine, for the local simulator.

Three numbers, each timed on the real code: ``local.spawn_s`` (a transcriber process starting,
importing what ``services.transcriber`` imports and loading the model: what a warm slot hides),
and ``local.per_file_s`` + ``local.rtf`` (a least-squares line through the real
:class:`services.transcriber.engine.Engine` transcribing espeak-ng clips of several lengths on
one thread each, one engine per core at the same time: a slot's speed when every slot is busy,
which is what a replay's backlog sees). The result is a calibration file whose every entry says where,
when and under what load it was measured.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.plan.calibration import Calibration, Entry

SPAWN_CODE = (
    "import services.common.nats_client, services.transcriber.job\n"
    "from services.common.settings import Settings\n"
    "from services.transcriber.engine import Engine\n"
    "Engine(Settings().transcriber).load()\n"
)
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
    from services.common.settings import TranscriberSettings
    from services.transcriber.engine import Engine

    env = {**os.environ, "OMP_NUM_THREADS": "1", "KUBESCRIBE_WHISPER_CPU_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    spawns = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", SPAWN_CODE], check=True, env=env, capture_output=True)
        spawns.append(time.perf_counter() - started)
        note(f"transcriber start + model load: {spawns[-1]:.2f} s")
    parallel = os.cpu_count() or 1
    engines = [Engine(TranscriberSettings(cpu_threads=1)) for _ in range(parallel)]
    for engine in engines:
        engine.load()
    clips = [(path, wav_duration(path) or 0.0) for path in _clips(cache_dir)]
    durations, times = [], []

    def timed(engine: Engine, path: Path) -> float:
        started = time.perf_counter()
        engine.transcribe(path)
        return time.perf_counter() - started

    # Every slot busy at once, as in a replay: one engine per core, each on one thread.
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(repeats):
            for offset in range(len(clips)):
                batch = [clips[(offset + k) % len(clips)] for k in range(parallel)]
                for (_path, audio_s), seconds in zip(
                    batch, pool.map(timed, engines, [p for p, _ in batch]), strict=True
                ):
                    durations.append(audio_s)
                    times.append(seconds)
        note(f"{len(times)} clips timed, {parallel} at a time")
    slope, intercept = np.polyfit(np.asarray(durations), np.asarray(times), 1)
    where = (
        f"measured here by `kubescribe plan measure` on {platform.node()} ({os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}) at {datetime.now(UTC).isoformat(timespec='seconds')}"
    )
    spread = f"{min(durations):.1f}–{max(durations):.1f} s"
    entries = {
        "local.spawn_s": Entry(float(np.median(spawns)), f"{where}: median of {repeats} transcriber starts", "s"),
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
