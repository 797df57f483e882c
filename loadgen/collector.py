"""Outcomes of a replay, read from the system's own records.

``SummaryReady`` on the SUMMARIES stream and ``RecordingFailed`` on the FAILED stream only say
"look now"; the ``recordings`` KV is the source of truth, so a retried failure that later
succeeded counts as a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from loadgen.results import ItemResult, Outcome
from services.common.events import RecordingFailed, SummaryReady, parse_event
from services.common.status import RecordingStage, StatusStore
from services.common.topology import FAILED_STREAM, SUMMARIES_STREAM, SUMMARY_READY

logger = logging.getLogger(__name__)


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
