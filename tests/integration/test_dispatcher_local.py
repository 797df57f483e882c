"""The dispatcher with the local backend, end to end: real nats-server, real transcriber
subprocesses running faster-whisper on espeak-ng speech."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.events import AudioReceived, ObjectRef, RecordingFailed
from services.common.ids import new_id
from services.common.messaging import publish_event
from services.common.status import RecordingStage, StatusStore
from services.common.storage import get_bytes, put_bytes
from services.common.topology import AUDIO_BUCKET, AUDIO_RECEIVED
from services.dispatcher.backends.local import LocalJobBackend
from services.dispatcher.jobs_store import JobStore
from tests.dispatch.basic import Deploy, DispatcherBehaviour
from tests.integration._dispatch import (
    ReadyCounter,
    announce,
    delete_consumer,
    make_settings,
    prepare_clip,
    publish_burst,
    running_dispatcher,
    synthesize_clips,
    unique_durable,
    wait_for,
    wait_outcomes,
    wer,
)

pytestmark = [pytest.mark.nats]


@pytest.mark.whisper
@pytest.mark.slow
class TestDispatcherLocal(DispatcherBehaviour):
    """The behaviour suite on real transcriber subprocesses. Failure injection here is a real
    ``kill -9`` (:func:`test_kill_9_mid_job_retries_unfinished_recordings_once`); Kueue eviction
    has no local counterpart."""

    scriptable = False
    jobs_survive_restart = False

    @pytest.fixture
    def deploy(self, span_file: Path) -> Deploy:
        return lambda settings, _handler: lambda: backend_for(settings, span_file)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    return synthesize_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    return tmp_path / "spans.jsonl"


def backend_for(settings, span_file: Path, **options) -> LocalJobBackend:
    return LocalJobBackend(settings, env={"KUBESCRIBE_TELEMETRY_SPAN_FILE": str(span_file)}, **options)


async def failures(js, subject: str, recording_ids: set[str]) -> dict[str, RecordingFailed]:
    """Failure events of ``recording_ids`` stored on ``subject``."""
    found: dict[str, RecordingFailed] = {}
    sub = await js.subscribe(subject, ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            event = RecordingFailed.model_validate_json(msg.data)
            if event.recording_id in recording_ids:
                found[event.recording_id] = event
    finally:
        await sub.unsubscribe()


async def test_malformed_and_missing_audio_fail_with_reasons(js, nats_settings, span_file) -> None:
    settings = make_settings(nats_settings)
    durable = unique_durable()
    missing = AudioReceived(source="tests", recording_id=new_id(), audio=ObjectRef(bucket=AUDIO_BUCKET, name="gone"))
    bad_id = new_id()
    try:
        async with running_dispatcher(settings, backend_for(settings, span_file), durable):
            await publish_event(js, missing)
            body = {"recording_id": bad_id, "source": "tests", "audio": {"bucket": "audio"}, "surprise": 1}
            await js.publish(AUDIO_RECEIVED, json.dumps(body).encode())
            await js.publish(AUDIO_RECEIVED, b"\xff not json")
            statuses = await wait_outcomes(js, [missing.recording_id, bad_id], timeout=20)
            # Everything was acked: nothing stays pending on the consumer.
            await wait_for(lambda: _no_pending(js, durable), "the consumer to have no unacked messages", timeout=10)
    finally:
        await delete_consumer(js, durable)
    assert statuses[missing.recording_id].stage is RecordingStage.failed
    assert "does not exist" in (statuses[missing.recording_id].error or "")
    assert statuses[bad_id].stage is RecordingStage.failed
    assert "audio.name" in (statuses[bad_id].error or "") and "surprise" in (statuses[bad_id].error or "")
    events = await failures(js, "kubescribe.dispatch.failed", {missing.recording_id, bad_id})
    assert set(events) == {missing.recording_id, bad_id}
    assert all(not e.retryable and e.stage.value == "dispatch" for e in events.values())


async def _no_pending(js, durable: str) -> bool:
    info = await js.consumer_info("AUDIO", durable)
    return info.num_ack_pending == 0 and info.num_pending == 0


@pytest.mark.whisper
@pytest.mark.slow
async def test_thirty_recordings_are_packed_and_transcribed(js, nats_settings, clips, span_file) -> None:
    settings = make_settings(nats_settings, target_job_audio_s=60.0, max_linger_s=0.5)
    durable = unique_durable()
    counter = ReadyCounter()
    await counter.start(js)
    memory = InMemorySpanExporter()
    try:
        async with running_dispatcher(settings, backend_for(settings, span_file), durable):
            trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))  # type: ignore[attr-defined]
            events = await publish_burst(js, [clips[i % len(clips)][0] for i in range(30)])
            texts = [clips[i % len(clips)][1] for i in range(30)]
            ids = [e.recording_id for e in events]
            statuses = await wait_outcomes(js, ids, timeout=240)
            await wait_for(lambda: _all_counted(counter, ids), "every TranscriptReady", timeout=10)
    finally:
        await counter.stop()
        await delete_consumer(js, durable)
    assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
    job_ids = {s.job_id for s in statuses.values()}
    assert 1 < len(job_ids) < 30, f"{len(job_ids)} jobs for 30 recordings"
    assert all(counter.counts[rid] == 1 for rid in ids)
    for status in statuses.values():
        assert {"queued", "dispatched", "admitted", "running", "transcribed"} <= set(status.timestamps)
    hypotheses = []
    for rid in ids:
        ref = statuses[rid].transcript
        assert ref is not None
        hypotheses.append(json.loads(await get_bytes(js, ref))["text"])
    assert wer(texts, hypotheses) <= 0.15
    jobs = await JobStore.open(js)
    job = await jobs.get(statuses[ids[0]].job_id)
    assert job is not None and job.model == "tiny.en" and job.profile == "mig-1g.5gb"
    # Every stage span joined the recording's trace (its traceparent came from the message headers).
    trace_ids = {rid: statuses[rid].traceparent.split("-")[1] for rid in ids}  # type: ignore[union-attr]
    spans = [json.loads(line) for line in span_file.read_text().splitlines()]
    spans += [
        {"name": s.name, "trace_id": f"{s.context.trace_id:032x}", "attributes": dict(s.attributes or {})}
        for s in memory.get_finished_spans()
    ]
    for name in ("queue_wait", "admission_wait", "model_load", "transcription"):
        joined = {
            s["attributes"]["kubescribe.recording_id"]
            for s in spans
            if s["name"] == name and s["trace_id"] == trace_ids.get(s["attributes"].get("kubescribe.recording_id"))
        }
        assert set(ids) <= joined, f"{name} spans missing from {len(set(ids) - joined)} traces"


async def _all_counted(counter: ReadyCounter, ids: list[str]) -> bool:
    return all(rid in counter.counts for rid in ids)


@pytest.mark.whisper
@pytest.mark.slow
async def test_kill_9_mid_job_retries_unfinished_recordings_once(js, nats_settings, clips, span_file) -> None:
    settings = make_settings(nats_settings, target_job_audio_s=600.0, max_linger_s=0.5, slots=1)
    durable = unique_durable()
    counter = ReadyCounter()
    await counter.start(js)
    backend = backend_for(settings, span_file)
    try:
        async with running_dispatcher(settings, backend, durable):
            events = await publish_burst(js, [clips[i][0] for i in range(8)])
            ids = [e.recording_id for e in events]
            store = await StatusStore.open(js)

            async def first_done() -> bool:
                return any(rid in counter.counts for rid in ids)

            await wait_for(first_done, "the first TranscriptReady", timeout=60)
            first = await store.get(ids[0])
            assert first is not None and first.job_id is not None
            pid = backend.pid_of(first.job_id)
            assert pid is not None, "the job should still be running"
            os.kill(pid, signal.SIGKILL)
            statuses = await wait_outcomes(js, ids, timeout=180)
            await wait_for(lambda: _all_counted(counter, ids), "every TranscriptReady", timeout=10)
            await asyncio.sleep(0.5)  # a duplicate would show up now
    finally:
        await counter.stop()
        await delete_consumer(js, durable)
    assert {s.stage for s in statuses.values()} == {RecordingStage.transcribed}
    assert all(counter.counts[rid] == 1 for rid in ids), counter.counts
    assert len({s.job_id for s in statuses.values()}) >= 2, "the unfinished recordings ran in a retry job"
    assert max(s.attempts for s in statuses.values()) == 2


@pytest.mark.whisper
@pytest.mark.slow
async def test_corrupt_recording_in_a_packed_job_fails_alone(js, nats_settings, clips, span_file, tmp_path) -> None:
    settings = make_settings(nats_settings, target_job_audio_s=600.0, max_linger_s=0.5, slots=1)
    durable = unique_durable()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(4000))
    try:
        async with running_dispatcher(settings, backend_for(settings, span_file), durable):
            good = [await prepare_clip(js, clips[i][0]) for i in range(3)]
            bad = await prepare_clip(js, corrupt, duration_s=2.0)
            for event in [good[0], bad, *good[1:]]:  # the corrupt one in the middle of the job
                await announce(js, event)
            ids = [e.recording_id for e in [*good, bad]]
            statuses = await wait_outcomes(js, ids, timeout=120)
    finally:
        await delete_consumer(js, durable)
    assert len({s.job_id for s in statuses.values()}) == 1, "all four were packed into one job"
    assert [statuses[e.recording_id].stage for e in good] == [RecordingStage.transcribed] * 3
    failed = statuses[bad.recording_id]
    assert failed.stage is RecordingStage.failed and failed.error_stage == "transcribe"
    assert "cannot decode" in (failed.error or "")
    events = await failures(js, "kubescribe.transcribe.failed", {bad.recording_id})
    assert events[bad.recording_id].job_id == failed.job_id and not events[bad.recording_id].retryable


async def test_redelivered_transcribed_recording_is_acked_without_a_job(js, nats_settings, span_file) -> None:
    """A redelivery after the outcome is durable is acked and starts nothing."""
    settings = make_settings(nats_settings)
    durable = unique_durable()
    rid = new_id()
    ref = await put_bytes(js, AUDIO_BUCKET, rid, b"not needed")
    store = await StatusStore.open(js)
    await store.advance(rid, RecordingStage.transcribed)
    backend = backend_for(settings, span_file)
    try:
        async with running_dispatcher(settings, backend, durable):
            await publish_event(js, AudioReceived(source="tests", recording_id=rid, audio=ref))
            await wait_for(lambda: _no_pending(js, durable), "the redelivery to be acked", timeout=10)
            assert await backend.active() == []
    finally:
        await delete_consumer(js, durable)
    status = await store.get(rid)
    assert status is not None and status.stage is RecordingStage.transcribed and status.job_id is None


async def test_jobs_command_lists_stored_jobs(js, nats_settings) -> None:
    import typer
    from typer.testing import CliRunner

    from services.dispatcher.cli import register
    from services.dispatcher.domain import JobRecording, TranscriptionJob

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that `jobs` is a subcommand as in `kubescribe jobs`
    register(app)
    job = TranscriptionJob(
        model="tiny.en",
        profile="mig-1g.5gb",
        recordings=[JobRecording(recording_id=new_id(), audio=ObjectRef(bucket="audio", name="x"), duration_s=3.0)],
    )
    await (await JobStore.open(js)).put(job)
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["jobs", "--json", "--limit", "1000"], env={"KUBESCRIBE_NATS_URL": nats_settings.url}
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {"job_id": job.job_id, "state": "submitted", "recordings": 1} == {
        k: v
        for k, v in next(r for r in rows if r["job_id"] == job.job_id).items()
        if k in ("job_id", "state", "recordings")
    }


async def test_a_job_that_keeps_crashing_fails_with_the_reason(js, nats_settings, span_file, tmp_path) -> None:
    """Bounded attempts: a transcriber that cannot start fails the recording with its stderr, once."""
    settings = make_settings(nats_settings, max_attempts=2, retry_backoff_s=0.1, slots=1)
    durable = unique_durable()
    backend = LocalJobBackend(
        settings,
        env={"KUBESCRIBE_TELEMETRY_SPAN_FILE": str(span_file), "KUBESCRIBE_WHISPER_MODEL_DIR": str(tmp_path)},
    )
    rid = new_id()
    ref = await put_bytes(js, AUDIO_BUCKET, rid, b"RIFF")
    try:
        async with running_dispatcher(settings, backend, durable):
            await publish_event(js, AudioReceived(source="tests", recording_id=rid, audio=ref, duration_s=1.0))
            statuses = await wait_outcomes(js, [rid], timeout=60)
            await wait_for(lambda: _no_pending(js, durable), "the message to be acked", timeout=10)
    finally:
        await delete_consumer(js, durable)
    status = statuses[rid]
    assert status.stage is RecordingStage.failed and status.attempts == 2
    assert "not transcribed after 2 attempts" in (status.error or "")
    assert "KUBESCRIBE_WHISPER_MODEL_DIR" in (status.error or "")  # the transcriber's own reason
    events = await failures(js, "kubescribe.transcribe.failed", {rid})
    assert events[rid].retryable and events[rid].attempts == 2


async def test_body_that_claims_json_but_is_not_is_reported_and_acked(js, nats_settings, span_file) -> None:
    """FastStream's decoding never stands between a malformed event and its RecordingFailed."""
    settings = make_settings(nats_settings)
    durable = unique_durable()
    try:
        async with running_dispatcher(settings, backend_for(settings, span_file), durable):
            await js.publish(AUDIO_RECEIVED, b"{not json", headers={"content-type": "application/json"})
            await wait_for(lambda: _no_pending(js, durable), "the malformed message to be acked", timeout=10)
            info = await js.consumer_info("AUDIO", durable)
    finally:
        await delete_consumer(js, durable)
    assert info.delivered.consumer_seq == 1, "acked on its first delivery, not redelivered"
