"""Making traces: arrival processes (Poisson, constant rate, bursts) with a seed, and presets
shaped like the paper's three experiments.

- ``kueue``: a burst of 32 transcription jobs at t=0, half with the medium and half with the
  large Whisper model (the paper's Kueue on/off experiment: makespan of the burst).
- ``das``: Poisson arrivals of jobs with mixed model sizes, so right-sized MIG slices (DAS)
  can run several at once (the paper's DAS on/off experiment: mean job completion time).
- ``llm``: transcript-like prompts for the LLM-only experiment (TTFT at fixed concurrency,
  gateway versus random routing); arrivals are driven by the concurrency, so offsets are 0.

Everything is deterministic in the seed: the same command makes the same file.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from loadgen.errors import LoadgenError
from loadgen.trace import NoiseAudio, SpeechAudio, ToneAudio, TraceItem
from services.common.events import Priority

Pattern = Literal["poisson", "constant", "burst"]
AudioKind = Literal["speech", "tone", "noise"]
PRESETS = ("kueue", "das", "llm")

SENTENCES = (
    "The team reviewed the quarterly roadmap and agreed to move the launch to March.",
    "Maria will prepare the budget report before the next planning meeting.",
    "We found that the login service fails when the cache is cold.",
    "The customer asked for a discount on the annual support contract.",
    "Our hiring plan adds two engineers to the data platform group.",
    "Testing on the new cluster showed a twenty percent faster build time.",
    "Please send the signed contract to the legal department by Friday.",
    "The design review raised concerns about the mobile navigation.",
    "Marketing wants a short video that explains the new pricing.",
    "The outage last week was caused by an expired certificate.",
    "We will migrate the reporting database during the weekend window.",
    "Everyone agreed to keep the weekly status meeting under thirty minutes.",
)
"""Plain sentences with a clear topic each, so transcripts and summaries can be checked by eye."""


def arrival_offsets(
    pattern: Pattern,
    count: int,
    *,
    rate: float = 1.0,
    seed: int = 0,
    burst_size: int | None = None,
    burst_interval_s: float = 10.0,
) -> list[float]:
    """Arrival offsets in seconds (sorted, first at 0).

    ``poisson``: exponential gaps with mean ``1/rate``; ``constant``: exactly ``1/rate`` apart;
    ``burst``: groups of ``burst_size`` (default: all) every ``burst_interval_s``.
    """
    if count < 0:
        raise LoadgenError(f"count must be >= 0, got {count}")
    if pattern in ("poisson", "constant") and rate <= 0:
        raise LoadgenError(f"rate must be > 0 arrivals/s for {pattern} arrivals, got {rate}")
    if pattern == "constant":
        return [round(i / rate, 6) for i in range(count)]
    if pattern == "poisson":
        rng = random.Random(seed)
        offsets, now = [], 0.0
        for i in range(count):
            if i:
                now += rng.expovariate(rate)
            offsets.append(round(now, 6))
        return offsets
    if pattern == "burst":
        size = burst_size or max(count, 1)
        if size < 1 or burst_interval_s < 0:
            raise LoadgenError("burst_size must be >= 1 and burst_interval_s >= 0")
        return [round((i // size) * burst_interval_s, 6) for i in range(count)]
    raise LoadgenError(f"unknown arrival pattern {pattern!r}: use poisson, constant or burst")


def speech_text(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def make_audio(
    kind: AudioKind,
    rng: random.Random,
    *,
    min_sentences: int = 1,
    max_sentences: int = 4,
    duration_s: float = 10.0,
    jitter: float = 0.0,
) -> SpeechAudio | ToneAudio | NoiseAudio:
    """One synthetic audio spec; speech length varies between the sentence bounds, tone and noise
    lengths by ``±jitter`` (a fraction of ``duration_s``)."""
    if kind != "speech" and jitter:
        duration_s = round(duration_s * rng.uniform(1 - jitter, 1 + jitter), 3)
    if kind == "speech":
        return SpeechAudio(text=speech_text(rng, rng.randint(min_sentences, max_sentences)))
    if kind == "tone":
        return ToneAudio(duration_s=duration_s)
    if kind == "noise":
        return NoiseAudio(duration_s=duration_s, seed=rng.randrange(1 << 30))
    raise LoadgenError(f"unknown audio kind {kind!r}: use speech, tone or noise")


def make_trace(
    count: int,
    *,
    pattern: Pattern = "poisson",
    rate: float = 1.0,
    seed: int = 0,
    audio: AudioKind = "speech",
    models: Sequence[str | None] = (None,),
    tenants: Sequence[str] = ("default",),
    priority: Priority = Priority.normal,
    burst_size: int | None = None,
    burst_interval_s: float = 10.0,
    min_sentences: int = 1,
    max_sentences: int = 4,
    duration_s: float = 10.0,
    jitter: float = 0.0,
    prefix: str = "r",
) -> list[TraceItem]:
    """A generic audio trace; models and tenants are assigned round-robin (so halves are exact)."""
    rng = random.Random(seed)
    offsets = arrival_offsets(
        pattern, count, rate=rate, seed=seed, burst_size=burst_size, burst_interval_s=burst_interval_s
    )
    width = max(3, len(str(count - 1)))
    return [
        TraceItem(
            id=f"{prefix}{i:0{width}d}",
            offset_s=offset,
            audio=make_audio(
                audio,
                rng,
                min_sentences=min_sentences,
                max_sentences=max_sentences,
                duration_s=duration_s,
                jitter=jitter,
            ),
            model=models[i % len(models)],
            tenant=tenants[i % len(tenants)],
            priority=priority,
        )
        for i, offset in enumerate(offsets)
    ]


def make_prompts(count: int, *, seed: int = 0, max_tokens: int = 128, min_sentences: int = 4, max_sentences: int = 40):
    """Transcript-like prompts of varying length (the LLM-only experiment's workload)."""
    rng = random.Random(seed)
    width = max(3, len(str(count - 1)))
    return [
        TraceItem(
            id=f"p{i:0{width}d}",
            offset_s=0.0,
            prompt="Summarize this meeting transcript in three bullet points.\n\n"
            + speech_text(rng, rng.randint(min_sentences, max_sentences)),
            max_tokens=max_tokens,
        )
        for i in range(count)
    ]


def preset(
    name: str,
    *,
    seed: int = 0,
    count: int | None = None,
    models: Sequence[str] | None = None,
    audio: AudioKind = "speech",
    rate: float | None = None,
) -> list[TraceItem]:
    """A trace shaped like one of the paper's experiments (see the module docstring).

    ``models`` replaces the preset's models in order, e.g. ``("tiny.en", "tiny.en")`` for the
    local analogue of the Kueue experiment, where only the bundled model is available offline.
    """
    if name == "kueue":
        chosen = list(models or ("medium", "large-v3"))
        return make_trace(
            count or 32,
            pattern="burst",
            seed=seed,
            audio=audio,
            models=chosen,
            max_sentences=6,
            duration_s=30.0,
            jitter=0.5,
            prefix="k",
        )
    if name == "das":
        chosen = list(models or ("tiny", "base", "small", "medium"))
        return make_trace(
            count or 24,
            pattern="poisson",
            rate=rate or 0.5,
            seed=seed,
            audio=audio,
            models=chosen,
            duration_s=30.0,
            jitter=0.5,
            prefix="d",
        )
    if name == "llm":
        return make_prompts(count or 100, seed=seed)
    raise LoadgenError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
