"""Open-loop replay: send every trace item at its arrival time, whatever the system does.

The sender never waits for a completion (or even for a previous submission) before the next
arrival: each submission runs in its own task, started at its scheduled time. That is what
makes a replay measure the system instead of the load generator (a closed loop would slow its
arrivals down exactly when the system is slow, hiding the queueing the paper measures).

Outcomes are collected from the system's own records: ``SummaryReady`` on the SUMMARIES
stream, ``RecordingFailed`` on the FAILED stream, and the ``recordings`` KV, which is the
source of truth (events only say "look now"). The run stops when every item reached a
terminal state, or at the deadline (the rest are ``timeout``).

This module is the engine (scheduling, sending, stopping). Targets (:class:`HttpTarget` uploads
to the ingest API; :class:`NatsTarget` puts the object and publishes ``AudioReceived`` directly,
as a client system would) live in :mod:`loadgen.targets`; outcome collection in
:mod:`loadgen.collector`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext

from loadgen.audio import audio_key, materialize, wav_duration
from loadgen.collector import OutcomeCollector
from loadgen.errors import TargetError
from loadgen.report import percentile
from loadgen.results import ItemResult, Run, RunFooter, RunHeader
from loadgen.targets import Audio, HttpTarget, NatsTarget, Target
from loadgen.trace import TraceItem
from services.common.events import utcnow
from services.common.ids import new_id
from services.common.progress import NullProgress, Progress

__all__ = [
    "IN_MEMORY_MAX_BYTES",
    "Audio",
    "HttpTarget",
    "NatsTarget",
    "OutcomeCollector",
    "ReplayOptions",
    "Target",
    "lag_percentile",
    "prepare_audio",
    "replay",
]

IN_MEMORY_MAX_BYTES = 32 << 20
"""Recordings up to this size are read before the clock starts; larger ones stream from disk."""


@dataclass
class ReplayOptions:
    """Knobs of one replay."""

    name: str = "run"
    deadline_s: float = 600.0
    """Stop after this long from the first arrival; unfinished items are ``timeout``."""
    until: str = "summarized"
    """``summarized`` (the whole pipeline) or ``transcribed`` (transcription-only experiments)."""
    collect: bool = True
    """False: only send (fire-and-forget), e.g. to load a system someone else measures."""
    cache_dir: Path | None = None
    base_dir: Path | None = None
    trace: str | None = None
    return_on_cancel: bool = False
    """True (the CLI): a cancelled replay (Ctrl-C) returns what it has, marked ``interrupted``,
    so the results of a long run are not lost; False re-raises, as library code expects."""
    extra: dict = field(default_factory=dict)


def prepare_audio(
    items: Sequence[TraceItem], *, cache_dir: Path | None, base_dir: Path | None, progress: Progress
) -> dict[str, Audio]:
    """Render and read every distinct recording before the clock starts."""
    progress.on_prepare(len(items))
    audio: dict[str, Audio] = {}
    for done, item in enumerate(items, start=1):
        if item.audio is None:
            raise TargetError(f"item {item.id} has a prompt, not audio: replay it with `kubescribe loadgen llm`")
        key = audio_key(item.audio)
        if key not in audio:
            path = materialize(item.audio, cache_dir=cache_dir, base_dir=base_dir)
            size = path.stat().st_size
            data = path.read_bytes() if size <= IN_MEMORY_MAX_BYTES else None
            audio[key] = Audio(path=path, data=data, duration_s=wav_duration(path), size=size)
        progress.on_prepared(done)
    return audio


async def replay(
    items: Sequence[TraceItem],
    target: Target,
    *,
    js: JetStreamContext | None = None,
    options: ReplayOptions | None = None,
    progress: Progress | None = None,
) -> Run:
    """Replay ``items`` open-loop against ``target``; outcomes come from ``js`` when collecting."""
    options = options or ReplayOptions()
    progress = progress or NullProgress()
    if options.collect and js is None:
        raise TargetError("collecting outcomes needs a NATS connection: pass --nats URL, or --no-collect")
    ordered = sorted(items, key=lambda i: i.offset_s)
    audio = prepare_audio(ordered, cache_dir=options.cache_dir, base_dir=options.base_dir, progress=progress)

    run_id = new_id()
    header = RunHeader(
        run_id=run_id,
        name=options.name,
        mode="replay",
        target=target.description,
        trace=options.trace,
        items=len(ordered),
        options={"deadline_s": options.deadline_s, "until": options.until, "collect": options.collect, **options.extra},
    )
    run = Run(header=header)
    collector = OutcomeCollector(js, until=options.until) if options.collect and js is not None else None
    if collector:
        collector.on_done = progress.on_result
        await collector.start()

    loop = asyncio.get_running_loop()
    # Every item has a result from the start: one never sent (deadline, Ctrl-C) still shows up.
    results = [
        ItemResult(
            id=item.id,
            tenant=item.tenant,
            priority=item.priority.value,
            model=item.model,
            audio_s=audio[audio_key(item.audio)].duration_s,  # type: ignore[arg-type]
            scheduled_s=item.offset_s,
        )
        for item in ordered
    ]
    sends: list[asyncio.Task] = []
    header.started_at = utcnow()
    t0 = loop.time()
    if collector:
        collector.clock, collector.t0 = loop.time, t0
    progress.on_start(header)

    async def send(item: TraceItem, result: ItemResult) -> None:
        result.sent_s = loop.time() - t0
        result.lag_s = result.sent_s - item.offset_s
        progress.on_sent(item.id, result.lag_s)
        try:
            recording_id = await target.submit(item, audio[audio_key(item.audio)], run_id=run_id)  # type: ignore[arg-type]
        except Exception as exc:  # a target bug must not vanish as an unretrieved task exception
            reason = str(exc) if isinstance(exc, TargetError) else f"{type(exc).__name__}: {exc}"
            result.outcome, result.error = "rejected", reason
            result.completed_s = loop.time() - t0
            progress.on_result(result)
            return
        result.accepted_s = loop.time() - t0
        result.recording_id = recording_id
        if collector:
            collector.track(result)
        else:
            progress.on_result(result)

    deadline = t0 + options.deadline_s
    stopped = "completed"
    try:
        for item, result in zip(ordered, results, strict=True):
            due = t0 + item.offset_s
            if due > deadline:
                result.error = "arrival after the deadline: not sent"
                stopped = "deadline"
                continue
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(asyncio.create_task(send(item, result), name=f"loadgen-send-{item.id}"))
        if sends:
            _, pending = await asyncio.wait(sends, timeout=max(deadline - loop.time(), 0))
            for task in pending:
                task.cancel()
            if pending:
                stopped = "deadline"
        if collector:
            collector.sending_finished()
            if not await collector.wait(deadline - loop.time()):
                stopped = "deadline"
    except asyncio.CancelledError:
        stopped = "interrupted"
        for task in sends:
            task.cancel()
        if not options.return_on_cancel:
            raise
    finally:
        if collector:
            await asyncio.shield(collector.finish())
        for result in results:
            if result.sent_s is None and result.error is None:
                result.error = f"not sent: the run stopped ({stopped}) before its arrival time"
            elif not collector and result.recording_id:
                result.outcome = "accepted"
        run.items = results
        duration = loop.time() - t0
        run.footer = RunFooter(duration_s=duration, stopped=stopped)  # type: ignore[arg-type]
        progress.on_end(stopped, duration)
    return run


def lag_percentile(run: Run, q: float) -> float:
    """The ``q``-quantile (0..1) of send lag over the items that were sent (:func:`percentile`)."""
    return percentile([r.lag_s for r in run.items if r.lag_s is not None], q * 100)
