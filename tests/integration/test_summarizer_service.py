"""The summarizer service end to end over a real nats-server and the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js.api import DeliverPolicy
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.documents import Segment, Summary, Transcript
from services.common.events import Priority, RecordingFailed, SummaryReady, TranscriptReady
from services.common.ids import new_id
from services.common.inflight import MAX_DELIVER
from services.common.messaging import publish_event
from services.common.nats_client import connect
from services.common.settings import LlmSettings, NatsSettings, Settings, SummarizerSettings
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import get_bytes, put_bytes
from services.common.telemetry import StageSpan, setup_telemetry
from services.common.topology import STATUS_BUCKET, SUMMARIES_STREAM, TRANSCRIPTS_BUCKET, TRANSCRIPTS_STREAM
from services.runtime.processes import wait_until_async
from services.runtime.sim import SimConfig, SimLlmServer
from services.summarizer.app import serve
from tests.integration._dispatch import stored_events

pytestmark = pytest.mark.nats

TRACEPARENT = "00-{trace}-{span}-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_telemetry("kubescribe-tests").add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _settings(nats_settings: NatsSettings, sim: SimLlmServer, **summarizer: float) -> Settings:
    settings = Settings()
    settings.__dict__["nats"] = nats_settings
    settings.__dict__["llm"] = LlmSettings(base_url=sim.base_url, model=sim.config.model, max_tokens=16)
    settings.__dict__["summarizer"] = SummarizerSettings(**summarizer)
    return settings


@contextlib.asynccontextmanager
async def running(settings: Settings, durable: str | None = None) -> AsyncIterator[str]:
    """Serve with a durable of the test's own; yields the durable's name."""
    ready = asyncio.Event()
    durable = durable or f"summarizer-test-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(serve(settings, ready=ready, durable=durable, deliver_policy=DeliverPolicy.NEW))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield durable
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _submit(
    js,
    text: str = "We discussed the budget for the new office and agreed to hire two engineers.",
    *,
    trace: str | None = None,
    recording_id: str | None = None,
) -> tuple[str, TranscriptReady]:
    recording_id = recording_id or new_id()
    store = await StatusStore.open(js)
    await store.update(
        recording_id,
        lambda s: s.advance(RecordingStage.transcribed),
        create=lambda: RecordingStatus(recording_id=recording_id).advance(RecordingStage.received),
    )
    transcript = Transcript(
        recording_id=recording_id,
        text=text,
        segments=[Segment(start=0, end=3, text=text)] if text else [],
        model="tiny.en",
        audio_s=3,
        processing_s=0.2,
        job_id="job-1",
        language="en",
    )
    ref = await put_bytes(js, TRANSCRIPTS_BUCKET, recording_id, transcript.model_dump_json().encode())
    event = TranscriptReady(
        source="tests",
        recording_id=recording_id,
        transcript=ref,
        job_id="job-1",
        model="tiny.en",
        audio_s=3,
        processing_s=0.2,
        word_count=len(text.split()),
        priority=Priority.high,
    )
    headers = {"traceparent": trace} if trace else None
    await publish_event(js, event, headers=headers)
    return recording_id, event


async def _wait_done(js, recording_id: str, timeout: float = 20) -> RecordingStatus:
    store = await StatusStore.open(js)

    async def done() -> RecordingStatus | None:
        status = await store.get(recording_id)
        return status if status and status.stage in (RecordingStage.summarized, RecordingStage.failed) else None

    return await wait_until_async(done, f"recording {recording_id} to be done", timeout)


async def test_summarizes_and_traces(js, nats_settings, spans) -> None:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with SimLlmServer(SimConfig(model="m", ttft=0.05)) as sim:
        sub = await js.subscribe("kubescribe.summary.ready")
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js, trace=TRACEPARENT.format(trace=trace_id, span=parent_id))
            status = await _wait_done(js, recording_id)
            assert status.stage is RecordingStage.summarized, status.error
            assert status.summary is not None and status.metrics["ttft_s"] >= 0.05
            assert status.metrics["tokens_out"] == 16
            summary = Summary.model_validate_json(await get_bytes(js, status.summary))
            assert summary.text and summary.requests == 1
            ready = None
            for _ in range(50):
                message = await sub.next_msg(timeout=2)
                if recording_id.encode() in message.data:
                    ready = message
                    break
            assert ready is not None and ready.headers and trace_id in ready.headers["traceparent"]
        assert sim.engine is not None and sim.engine.objectives["interactive"] == 1
        await sub.unsubscribe()
    names = {s.name for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id}
    assert {StageSpan.SUMMARIZATION_QUEUE, StageSpan.TTFT, StageSpan.GENERATION, StageSpan.TOTAL} <= names


async def test_redelivery_is_acked_without_a_second_call(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with running(_settings(nats_settings, sim)):
            recording_id, event = await _submit(js)
            await _wait_done(js, recording_id)
            calls = sim.engine.requests  # type: ignore[union-attr]
            # The same fact again (a redelivery or a duplicate publish outside the window).
            await js.publish(event.SUBJECT, event.model_dump_json().encode())
            await asyncio.sleep(1.0)
            assert sim.engine.requests == calls  # type: ignore[union-attr]


async def test_malformed_event_is_reported_and_acked(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        failed = await js.subscribe("kubescribe.summarize.failed")
        async with running(_settings(nats_settings, sim)):
            marker = uuid.uuid4().hex
            await js.publish("kubescribe.transcript.ready", f'{{"junk": "{marker}"}}'.encode())
            message = await failed.next_msg(timeout=10)
            assert b"invalid kubescribe.transcript.ready.v1 event" in message.data
            assert b'"retryable":false' in message.data
        await failed.unsubscribe()


async def test_storm_ends_in_retryable_failure_never_lost(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m", failure_rate=1.0, retry_after=0.05)) as sim:
        settings = _settings(nats_settings, sim, retry_deadline_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05)
        failed = await js.subscribe("kubescribe.summarize.failed")
        async with running(settings):
            recording_id, _ = await _submit(js)
            status = await _wait_done(js, recording_id, timeout=60)
            event = await _failure_of(failed, recording_id)
        await failed.unsubscribe()
    assert status.stage is RecordingStage.failed and status.retryable is True
    assert status.error_stage == "summarize" and "still unavailable" in (status.error or "")
    # A TemporaryError is nak'ed with its delay and retried by redelivery; the last delivery reports.
    assert event.retryable and event.attempts == MAX_DELIVER
    assert f"gave up after {MAX_DELIVER} deliveries" in event.reason


async def _failure_of(sub, recording_id: str) -> RecordingFailed:
    for _ in range(100):
        message = await sub.next_msg(timeout=10)
        event = RecordingFailed.model_validate_json(message.data)
        if event.recording_id == recording_id:
            return event
    raise AssertionError(f"no RecordingFailed for {recording_id}")


async def test_gateway_back_after_a_storm_summarizes_on_redelivery(js, nats_settings) -> None:
    """The client's retry deadline runs out, the message is nak'ed, and a later delivery succeeds."""
    with SimLlmServer(SimConfig(model="m", failure_rate=1.0, retry_after=0.05)) as sim:
        settings = _settings(nats_settings, sim, retry_deadline_s=0.3, backoff_base_s=0.01, backoff_max_s=0.05)
        async with running(settings) as durable:
            recording_id, _ = await _submit(js)

            async def redelivered() -> bool:
                return (await js.consumer_info(TRANSCRIPTS_STREAM, durable)).num_redelivered >= 1

            await wait_until_async(redelivered, "the failed summary to be redelivered", 30)
            assert sim.engine is not None
            sim.engine.config.failure_rate = 0.0  # the gateway recovers
            status = await _wait_done(js, recording_id, timeout=60)
    assert status.stage is RecordingStage.summarized, status.error


async def test_partial_storm_ends_in_success(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m", failure_rate=0.5, retry_after=0.01, seed=7)) as sim:
        settings = _settings(nats_settings, sim, retry_deadline_s=30, backoff_base_s=0.01, backoff_max_s=0.05)
        async with running(settings):
            ids = [(await _submit(js))[0] for _ in range(8)]
            statuses = [await _wait_done(js, rid) for rid in ids]
    assert all(s.stage is RecordingStage.summarized for s in statuses)


async def test_concurrency_never_exceeds_its_limit(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m", ttft=0.1, max_num_seqs=64)) as sim:
        async with running(_settings(nats_settings, sim, concurrency=3)):
            ids = [(await _submit(js))[0] for _ in range(12)]
            statuses = [await _wait_done(js, rid, timeout=30) for rid in ids]
        assert all(s.stage is RecordingStage.summarized for s in statuses)
        assert sim.peak_running == 3


async def test_backlog_stays_in_jetstream_and_is_handed_back_on_shutdown(js, nats_settings) -> None:
    """A slow gateway: only ``concurrency`` messages leave the stream; a shutdown hands them back at once."""
    with SimLlmServer(SimConfig(model="m", ttft=30, max_num_seqs=64)) as sim:
        async with running(_settings(nats_settings, sim, concurrency=2)) as durable:
            ids = [(await _submit(js))[0] for _ in range(6)]
            await wait_until_async(
                lambda: sim.engine is not None and sim.engine.running >= 2, "the summarizer to start two summaries", 10
            )
            await asyncio.sleep(0.5)  # room for a fetch that the free slots should not allow
            info = await js.consumer_info(TRANSCRIPTS_STREAM, durable)
            assert (info.num_ack_pending, info.num_pending) == (2, 4)
            assert sim.engine.running == 2
    # Another replica on the same durable gets the two interrupted ones well before ack_wait (60 s).
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with running(_settings(nats_settings, sim), durable=durable):
            statuses = [await _wait_done(js, rid, timeout=20) for rid in ids]
    assert all(s.stage is RecordingStage.summarized for s in statuses), [s.error for s in statuses]
    await js.delete_consumer(TRANSCRIPTS_STREAM, durable)


async def test_broken_stream_is_a_clear_failure(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m", fault="drop")) as sim:
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js)
            status = await _wait_done(js, recording_id)
    assert status.stage is RecordingStage.failed and "dropped" in (status.error or "")


async def test_silence_needs_no_gateway_call(js, nats_settings) -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js, text="")
            status = await _wait_done(js, recording_id)
        assert status.stage is RecordingStage.summarized and sim.engine.requests == 0  # type: ignore[union-attr]


async def test_long_transcript_is_map_reduced(js, nats_settings) -> None:
    long_text = " ".join(f"Point {i}: the team reviewed item {i} of the roadmap." for i in range(400))
    with SimLlmServer(SimConfig(model="m", max_model_len=2048)) as sim:
        settings = _settings(nats_settings, sim)
        settings.__dict__["llm"] = LlmSettings(base_url=sim.base_url, model="m", max_tokens=32, max_context_tokens=1024)
        async with running(settings):
            recording_id, _ = await _submit(js, text=long_text)
            status = await _wait_done(js, recording_id)
    assert status.stage is RecordingStage.summarized, status.error
    assert status.metrics["llm_requests"] > 2


async def test_a_crash_after_summary_ready_republishes_the_same_event(js, nats_settings, monkeypatch) -> None:
    """Killed between publishing SummaryReady and writing "summarized", the redelivery publishes
    it again with the same id, so JetStream keeps one (a fresh id per attempt made two)."""
    advance = StatusStore.advance
    crashes: list[str] = []

    async def crash_once_before_summarized(self, recording_id, stage, **fields):
        if stage is RecordingStage.summarized and not crashes:
            crashes.append(recording_id)
            raise RuntimeError("killed after the publish")  # the boundary naks: redelivered
        return await advance(self, recording_id, stage, **fields)

    monkeypatch.setattr(StatusStore, "advance", crash_once_before_summarized)
    await _summarized_through_one_crash(js, nats_settings, crashes)


async def _summarized_through_one_crash(js, nats_settings, crashes: list[str]) -> tuple[RecordingStatus, SummaryReady]:
    """One recording through a summarizer whose patched step crashes once (appending the recording
    id to ``crashes``): summarized with one LLM call and one SummaryReady, both returned."""
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js)
            status = await _wait_done(js, recording_id, timeout=60)
    assert crashes == [recording_id] and status.stage is RecordingStage.summarized
    assert sim.engine is not None and sim.engine.requests == 1  # the stored summary, not a second call
    events = await stored_events(js, SummaryReady.SUBJECT, SummaryReady, recording_id, stream=SUMMARIES_STREAM)
    assert len(events) == 1, [e.id for e in events]
    return status, events[0]


async def test_a_crash_after_storing_the_summary_republishes_it_without_a_second_llm_call(
    js, nats_settings, monkeypatch
) -> None:
    """Killed between storing the summary and publishing SummaryReady: the redelivery finds the
    stage already ``summarizing``, reads the summary stored under the recording's id and announces
    it, with the same reference and metrics as an uninterrupted run, and asks the LLM nothing."""
    import services.summarizer.consumer as consumer

    announce = consumer.publish_event
    crashes: list[str] = []

    async def crash_once_before_summary_ready(js_, event, *args, **kwargs):
        if isinstance(event, SummaryReady) and not crashes:
            crashes.append(event.recording_id)
            raise RuntimeError("killed after storing the summary")  # the boundary naks: redelivered
        return await announce(js_, event, *args, **kwargs)

    monkeypatch.setattr(consumer, "publish_event", crash_once_before_summary_ready)
    status, event = await _summarized_through_one_crash(js, nats_settings, crashes)
    assert event.summary == status.summary
    stored = await get_bytes(js, status.summary)
    assert status.summary.size == len(stored) and status.summary.sha256 == hashlib.sha256(stored).hexdigest()
    assert status.metrics["llm_requests"] == 1 and status.metrics["tokens_out"] > 0


async def test_a_summary_costs_one_status_write_per_stage(js, nats_settings) -> None:
    """``summarizing`` when the work starts and ``summarized`` with the reference at the end: no
    write in between (each costs a compare-and-set, its ack and a delivery to every ingest's watch)."""
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with running(_settings(nats_settings, sim)):
            recording_id = new_id()
            stages: list[str] = []

            async def record(msg) -> None:
                stages.append(json.loads(msg.data)["stage"])

            nc = await connect(nats_settings)
            await nc.subscribe(f"$KV.{STATUS_BUCKET}.{recording_id}", cb=record)
            try:
                await _submit(js, recording_id=recording_id)
                status = await _wait_done(js, recording_id, timeout=60)
                await nc.flush()
            finally:
                await nc.close()
    assert status.stage is RecordingStage.summarized and status.summary is not None
    assert stages[-2:] == ["summarizing", "summarized"] and stages.count("summarizing") == 1, stages
