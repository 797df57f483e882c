"""Grounding the planner: the same simulator, calibrated only from service times measured here,
predicts real replays on the embedded stack (local backend, slots = cores).

Steps, per workload: :func:`services.plan.measure.measure` times the real transcriber on a few
clips right before and right after the replay (their mean brackets the load the replay saw);
the workload (a burst or Poisson arrivals of short or of long recordings) is replayed open-loop
on the round's stack; the local simulator, fed the same trace with the rendered clips' real
durations, predicts makespan and mean JCT. The verdict per workload is the relative error; the
slow test holds it under 15 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.make import make_trace
from loadgen.trace import TraceItem, write_trace


@dataclass(frozen=True)
class Workload:
    name: str
    pattern: str
    count: int
    rate: float
    min_sentences: int
    max_sentences: int


WORKLOADS = (
    Workload("burst-short", "burst", 12, 1.0, 1, 4),
    Workload("poisson-short", "poisson", 12, 0.6, 1, 4),
    Workload("burst-long", "burst", 4, 1.0, 10, 14),
    Workload("poisson-long", "poisson", 5, 0.15, 8, 14),
)
TOLERANCE = 0.15


def workload_trace(workload: Workload, seed: int) -> list[TraceItem]:
    return make_trace(
        workload.count,
        pattern=workload.pattern,  # type: ignore[arg-type]
        rate=workload.rate,
        seed=seed,
        audio="speech",
        models=("tiny.en",),
        min_sentences=workload.min_sentences,
        max_sentences=workload.max_sentences,
        prefix=f"{workload.name[:1]}{workload.name.split('-')[1][:1]}",
    )


def predict(items: list[TraceItem], durations: dict[str, float], calibration, slots: int) -> dict[str, float]:
    from services.plan.local import LocalSim
    from services.plan.metrics import summarize
    from services.plan.sim import Recording

    recordings = [
        Recording(i.id, i.offset_s, durations[i.id], i.model or "tiny.en", i.tenant, i.priority.value)
        for i in sorted(items, key=lambda i: i.offset_s)
    ]
    summary = summarize(LocalSim(calibration, recordings, slots=slots).run())
    return {"makespan_s": summary["makespan_s"], "jct_mean_s": summary["jct_mean_s"]}


@functools.cache
def _warm_up() -> None:
    """The first transcriber starts of a session read the model and the Python packages from disk;
    later ones, and every replay's stack, find them in the page cache. An untimed first
    measurement keeps that cold start out of the calibration (it once put 4.8 s of start-up and a
    negative real-time factor into the first workload's). Once per process is enough (cached)."""
    from services.plan.measure import measure

    measure(repeats=1)


def ground(
    out: Path,
    *,
    seed: int = 1,
    workloads: tuple[Workload, ...] = WORKLOADS,
    calibration=None,
    reuse: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure (unless given a calibration), replay, predict; returns per-workload errors."""
    return asyncio.run(_ground(out, seed=seed, workloads=workloads, given=calibration, reuse=reuse, note=note))


async def _ground(
    out: Path,
    *,
    seed: int,
    workloads: tuple[Workload, ...],
    given,
    reuse: bool,
    note: Callable[[str], None],
) -> dict[str, Any]:
    """One round: the workloads replayed in turn on one stack, each between two measurements.

    Measured right before and right after each replay, because on a shared machine the speed of a
    core drifts with other people's load and the replay saw the load in between; the measurement
    after one workload is the one before the next, so a round of four workloads times the
    transcriber five times, not eight. The workloads share one stack (started when the first
    needs it): a replay waits for its recordings to be transcribed, so the next starts on an
    idle stack, and the stack's start-up stays out of every replay's clock either way.
    """
    from loadgen.audio import audio_key
    from loadgen.paper_stack import embedded_stack, replay_on, settle
    from loadgen.replay import prepare_audio
    from loadgen.report import summarize_replay
    from loadgen.results import read_run
    from services.common.progress import NullProgress
    from services.plan.calibration import Calibration
    from services.plan.measure import bracket, local_entries, measure

    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="kubescribe-ground-"))  # the stack's JetStream files: not results
    slots = os.cpu_count() or 1
    rows = []
    before = given
    async with contextlib.AsyncExitStack() as stacks:
        stack = None
        for workload in workloads:
            items = workload_trace(workload, seed)
            trace_path = write_trace(out / f"{workload.name}.trace.jsonl", items)
            audio = prepare_audio(items, cache_dir=None, base_dir=out, progress=NullProgress())
            durations = {i.id: audio[audio_key(i.audio)].duration_s or 0.0 for i in items if i.audio is not None}
            saved, measured_path = out / f"{workload.name}.jsonl", out / f"{workload.name}.calibration.json"
            if reuse and saved.exists() and (given is not None or measured_path.exists()):
                # Re-predict an earlier replay from its raw records and the timings taken beside it.
                run = read_run(saved)
                calibration = given or Calibration.default().merged(measured_path)
            else:
                if stack is None:
                    stack = await stacks.enter_async_context(embedded_stack("ground", env={}, workdir=scratch))
                if before is None:
                    await asyncio.to_thread(_warm_up)
                    before = await asyncio.to_thread(measure, repeats=1, note=note)
                run = await replay_on(
                    stack, items, trace_path, name=workload.name, env={}, results=out, deadline_s=600,
                    settle_limit_s=15.0,
                )  # fmt: skip
                if given is None:
                    # The summarizer may still be finishing the replay's last summaries.
                    await asyncio.to_thread(settle, 15.0)
                    after = await asyncio.to_thread(measure, repeats=1, note=note)
                    calibration, before = bracket(before, after), after
                    measured_path.write_text(json.dumps(local_entries(calibration), indent=1) + "\n")
                else:
                    calibration = given
            measured = summarize_replay(run)
            real = {"makespan_s": measured["makespan_s"], "jct_mean_s": measured["jct_s"]["mean"]}
            predicted = predict(items, durations, calibration, slots)
            errors = {k: (predicted[k] - real[k]) / real[k] for k in real}
            rows.append(
                {
                    "workload": workload.name,
                    "recordings": len(items),
                    "audio_s": round(sum(durations.values()), 2),
                    "measured": real,
                    "predicted": predicted,
                    "error": errors,
                    "within": all(abs(e) <= TOLERANCE for e in errors.values()),
                    "load_average": os.getloadavg()[0],
                }
            )
            note(
                f"{workload.name}: makespan {real['makespan_s']:.1f} s measured, "
                f"{predicted['makespan_s']:.1f} predicted; mean JCT {real['jct_mean_s']:.1f} / "
                f"{predicted['jct_mean_s']:.1f} s"
            )
    shutil.rmtree(scratch, ignore_errors=True)
    return {"slots": slots, "tolerance": TOLERANCE, "seed": seed, "workloads": rows}
