"""Open-loop replay: send every trace item at its arrival time, whatever the system does.

The sender never waits for a completion (or even for a previous submission) before the next
arrival: each submission runs in its own task, started at its scheduled time. That is what
makes a replay measure the system instead of the load generator (a closed loop would slow its
arrivals down exactly when the system is slow, hiding the queueing the paper measures).

Outcomes are collected from the system's own records: ``SummaryReady`` on the SUMMARIES
stream, ``RecordingFailed`` on the FAILED stream, and the ``recordings`` KV, which is the
source of truth (events only say "look now"). The run stops when every item reached a
terminal state, or at the deadline (the rest are ``timeout``).

Targets: :class:`HttpTarget` uploads to the ingest API; :class:`NatsTarget` puts the object
and publishes ``AudioReceived`` directly, as a client system would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from loadgen.audio import audio_key, materialize, wav_duration
from loadgen.errors import TargetError
from loadgen.progress import NullProgress, Progress
from loadgen.report import percentile
from loadgen.results import ItemResult, Outcome, Run, RunFooter, RunHeader
from loadgen.trace import TraceItem
from services.common.events import RecordingFailed, SummaryReady, parse_event, utcnow
from services.common.ids import new_id
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.topology import FAILED_STREAM, SUMMARIES_STREAM, SUMMARY_READY

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/loadgen"


IN_MEMORY_MAX_BYTES = 32 << 20
"""Recordings up to this size are read before the clock starts; larger ones stream from disk."""


@dataclass(frozen=True)
class Audio:
    """A rendered recording; ``data`` is None for large files, which are streamed at send time."""

    path: Path
    data: bytes | None
    duration_s: float | None
    size: int = 0

    async def chunks(self, size: int = 1 << 20) -> AsyncIterator[bytes]:
        with open(self.path, "rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, size):
                yield chunk


class Target(Protocol):
    """Where submissions go; ``submit`` returns the recording id the system assigned."""

    description: str

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str: ...

    async def aclose(self) -> None: ...


class HttpTarget:
    """``POST /v1/recordings`` on the ingest API (raw body, headers for tenant and priority).

    The connection pool is unbounded: with a slow ingest, a bounded pool would make arrivals
    queue inside the client, which is exactly the closed-loop behaviour a replay must avoid.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 300.0) -> None:
        self.description = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str:
        headers = {
            "Content-Type": _content_type(audio.path),
            "X-Tenant": item.tenant,
            "X-Priority": item.priority.value,
            # Retrying the same replay item never stores a recording twice.
            "Idempotency-Key": f"loadgen-{run_id}-{item.id}",
        }
        if item.model:
            headers["X-Model"] = item.model
        if item.language:
            headers["X-Language"] = item.language
        headers["X-Filename"] = audio.path.name
        try:
            body = audio.data if audio.data is not None else audio.chunks()
            if audio.data is None:
                headers["Content-Length"] = str(audio.size)
            response = await self.client.post("/v1/recordings", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TargetError(f"upload of {item.id} to {self.description} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise TargetError(f"ingest answered {response.status_code} for {item.id}: {response.text[:300]}")
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(f"ingest answered without a recording id: {response.text[:300]}") from exc

    async def aclose(self) -> None:
        await self.client.aclose()


class NatsTarget:
    """Direct publishing through :func:`services.ingest.client.publish_recording` (the object,
    then ``AudioReceived``), as a client system would.

    Before publishing it creates the recording's status with a ``received`` timestamp (the HTTP
    path gets one from ingest; a direct event otherwise starts at the dispatcher's ``queued``),
    so job completion times start at submission on both paths. A failed publish deletes it again.
    """

    def __init__(self, js: JetStreamContext, *, description: str = "nats") -> None:
        self.js = js
        self.description = description
        self._status: StatusStore | None = None

    async def submit(self, item: TraceItem, audio: Audio, *, run_id: str) -> str:
        from services.ingest.client import publish_recording

        recording_id = new_id()
        if self._status is None:
            self._status = await StatusStore.open(self.js)

        def create() -> RecordingStatus:
            return RecordingStatus(
                recording_id=recording_id,
                tenant=item.tenant,
                priority=item.priority,
                filename=audio.path.name,
                duration_s=audio.duration_s,
            )

        try:
            await self._status.update(recording_id, lambda s: s.advance(RecordingStage.received), create=create)
            await publish_recording(
                self.js,
                audio.path,
                tenant=item.tenant,
                priority=item.priority,
                source=SOURCE,
                recording_id=recording_id,
                model=item.model,
                language=item.language,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._status.kv.delete(recording_id)
            raise TargetError(f"direct publish of {item.id} failed: {type(exc).__name__}: {exc}") from exc
        return recording_id

    async def aclose(self) -> None:
        return None


def _content_type(path: Path) -> str:
    return {
        ".wav": "audio/wav",
        ".flac": "audio/flac",
        ".mp3": "audio/mpeg",
        ".ogg": "audio/ogg",
        ".m4a": "audio/mp4",
        ".webm": "audio/webm",
    }.get(path.suffix.lower(), "application/octet-stream")


TERMINAL: dict[str, tuple[RecordingStage, ...]] = {
    "summarized": (RecordingStage.summarized, RecordingStage.failed),
    "transcribed": (
        RecordingStage.transcribed,
        RecordingStage.summarizing,
        RecordingStage.summarized,
        RecordingStage.failed,
    ),
}
"""``until`` → the stages that end an item (``transcribed`` for transcription-only experiments)."""


@dataclass
class _Tracked:
    result: ItemResult
    recording_id: str
    done: bool = False


class OutcomeCollector:
    """Follows SUMMARIES, FAILED and the recordings KV for the recordings of one run.

    Events only mark a recording to be re-read: the KV status decides (a retried failure that
    later succeeded is not a failure). A periodic sweep re-reads everything pending, so a missed
    event costs at most ``sweep_s`` of accuracy, never a hang.
    """

    def __init__(
        self, js: JetStreamContext, *, until: str = "summarized", poll_s: float = 0.1, sweep_s: float = 2.0
    ) -> None:
        if until not in TERMINAL:
            raise ValueError(f"until must be one of {', '.join(TERMINAL)}")
        self.js = js
        self.terminal = TERMINAL[until]
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self.tracked: dict[str, _Tracked] = {}
        self.event_metrics: dict[str, dict[str, float]] = {}
        self._dirty: set[str] = set()
        self._subs: list = []
        self._store: StatusStore | None = None
        self._task: asyncio.Task | None = None
        self._all_done = asyncio.Event()
        self._sending_done = False
        self.clock = time.monotonic
        self.t0 = time.monotonic()
        self.on_done = lambda result: None

    async def start(self) -> None:
        self._store = await StatusStore.open(self.js)
        self._subs.append(
            await self.js.subscribe(
                SUMMARY_READY,
                stream=SUMMARIES_STREAM,
                cb=self._on_summary,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        )
        self._subs.append(
            await self.js.subscribe(
                "kubescribe.*.failed",
                stream=FAILED_STREAM,
                cb=self._on_failed,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        )
        self._task = asyncio.create_task(self._loop(), name="loadgen-collector")

    async def _on_summary(self, msg) -> None:
        try:
            event = parse_event(SummaryReady, msg.data)
        except Exception:
            return
        self.event_metrics[event.recording_id] = {
            "ttft_s": event.ttft_s,
            "generation_s": event.generation_s,
            "tokens_in": float(event.tokens_in),
            "tokens_out": float(event.tokens_out),
        }
        self._dirty.add(event.recording_id)

    async def _on_failed(self, msg) -> None:
        try:
            event = parse_event(RecordingFailed, msg.data)
        except Exception:
            return
        if event.recording_id:
            self._dirty.add(event.recording_id)

    def track(self, result: ItemResult) -> None:
        assert result.recording_id
        self.tracked[result.recording_id] = _Tracked(result, result.recording_id)
        self._dirty.add(result.recording_id)

    def sending_finished(self) -> None:
        self._sending_done = True
        self._check_all_done()

    def _check_all_done(self) -> None:
        if self._sending_done and all(t.done for t in self.tracked.values()):
            self._all_done.set()

    async def wait(self, timeout: float | None) -> bool:
        """True when every tracked recording is done, False at the timeout."""
        self._check_all_done()
        try:
            await asyncio.wait_for(self._all_done.wait(), timeout=None if timeout is None else max(timeout, 0))
        except TimeoutError:
            return False
        return True

    async def _loop(self) -> None:
        last_sweep = self.clock()
        while True:
            await asyncio.sleep(self.poll_s)
            now = self.clock()
            if now - last_sweep >= self.sweep_s:
                last_sweep = now
                self._dirty.update(rid for rid, t in self.tracked.items() if not t.done)
            dirty, self._dirty = self._dirty, set()
            for rid in dirty:
                tracked = self.tracked.get(rid)
                if tracked is None:
                    continue
                if tracked.done:
                    continue
                try:
                    await self.refresh(tracked)
                except Exception as exc:  # a KV hiccup must not end collection
                    logger.debug("status read of %s failed: %s", rid, exc)
                    self._dirty.add(rid)

    async def refresh(self, tracked: _Tracked, *, final: bool = False) -> None:
        assert self._store is not None
        status = await self._store.get(tracked.recording_id)
        if status is None:
            return
        result = tracked.result
        result.timestamps = dict(status.timestamps)
        result.metrics = {**self.event_metrics.get(tracked.recording_id, {}), **status.metrics}
        result.job_id = status.job_id
        if status.duration_s is not None and result.audio_s is None:
            result.audio_s = status.duration_s
        if status.stage in self.terminal and not tracked.done:
            tracked.done = True
            result.completed_s = self.clock() - self.t0
            result.outcome = _outcome(status.stage)
            if status.stage is RecordingStage.failed:
                result.error, result.error_stage = status.error, status.error_stage
            self.on_done(result)
            self._check_all_done()
        elif final and not tracked.done and status.stage is RecordingStage.failed:
            result.outcome, result.error = "failed", status.error

    async def finish(self) -> None:
        """Stop following, then read every status one last time (timestamps of timeouts too)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for tracked in self.tracked.values():
            with contextlib.suppress(Exception):
                await self.refresh(tracked, final=True)


def _outcome(stage: RecordingStage) -> Outcome:
    if stage is RecordingStage.failed:
        return "failed"
    if stage is RecordingStage.summarized:
        return "summarized"
    return "transcribed"


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
