"""From a loadgen trace (``loadgen/trace.py``) to the simulator's recordings, and the paper's
own workload as a trace: kube-burner iterations of {medium, large} over Earnings-22 calls."""

from __future__ import annotations

import random
from pathlib import Path

from loadgen.trace import FileAudio, SpeechAudio, TraceItem
from services.plan.calibration import Calibration
from services.plan.errors import PlanError
from services.plan.sim import Recording


def audio_seconds(item: TraceItem, base_dir: Path | None = None) -> float:
    """Seconds of audio an item carries: its length, a WAV file's header, or speech at its rate."""
    audio = item.audio
    if audio is None:
        raise PlanError(f"trace item {item.id!r} is a prompt, not a recording: the planner needs audio items")
    if isinstance(audio, SpeechAudio):
        return len(audio.text.split()) * 60.0 / audio.speed
    if isinstance(audio, FileAudio):
        from loadgen.audio import wav_duration

        path = Path(audio.path) if base_dir is None else base_dir / audio.path
        duration = wav_duration(path) if path.exists() else None
        if duration is None:
            raise PlanError(f"trace item {item.id!r}: cannot tell the length of {path} (a readable WAV is needed)")
        return duration
    return audio.duration_s


def recordings(items: list[TraceItem], default_model: str, base_dir: Path | None = None) -> list[Recording]:
    return [
        Recording(
            item.id,
            item.offset_s,
            audio_seconds(item, base_dir),
            item.model or default_model,
            item.tenant,
            item.priority.value,
        )
        for item in sorted(items, key=lambda i: i.offset_s)
    ]


def earnings_trace(
    calibration: Calibration, *, seed: int, iterations: int, models: tuple[str, ...], interval_s: float
) -> list[TraceItem]:
    """``iterations`` × ``models`` recordings of Earnings-22 length, one every ``interval_s`` (the
    order kube-burner creates the paper's Jobs in: medium-0, large-0, medium-1, ...)."""
    from loadgen.trace import ToneAudio

    rng = random.Random(seed)
    mean, spread = calibration["earnings22_mean_s"], calibration["earnings22_spread"]
    items = []
    for iteration in range(iterations):
        for model in models:
            duration = round(mean * rng.uniform(1 - spread, 1 + spread), 1)
            items.append(
                TraceItem(
                    id=f"{model}-{iteration:02d}",
                    offset_s=round(len(items) * interval_s, 6),
                    audio=ToneAudio(duration_s=duration),
                    model=model,
                )
            )
    return items
