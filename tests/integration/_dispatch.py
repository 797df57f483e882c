"""Helpers for the dispatcher end-to-end tests: clips, publishing, running the service, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jiwer
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.common.events import AudioReceived
from services.common.ids import new_id
from services.common.messaging import publish_event
from services.common.settings import DispatcherSettings, NatsSettings, Settings
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import put_bytes
from services.common.telemetry import tracer
from services.common.topology import AUDIO_BUCKET, AUDIO_STREAM
from services.dispatcher.app import serve
from services.dispatcher.backends import JobBackend
from services.runtime.processes import wait_until_async
from tests.speech import duration_of

OUTCOMES = {RecordingStage.transcribed, RecordingStage.failed}


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


def wer(reference: list[str], hypothesis: list[str]) -> float:
    return jiwer.wer([normalize(t) for t in reference], [normalize(t) for t in hypothesis])


def make_settings(nats_settings: NatsSettings, **dispatcher: object) -> Settings:
    settings = Settings()
    settings.nats = nats_settings  # type: ignore[misc]
    options: dict = {"max_linger_s": 0.3, "retry_backoff_s": 0.2, "slots": 2, "ack_wait_s": 10.0}
    options.update(dispatcher)
    settings.dispatcher = DispatcherSettings(**options)  # type: ignore[misc]
    return settings


async def prepare_clip(js: JetStreamContext, path: Path, **fields: object) -> AudioReceived:
    """Upload ``path`` and build its AudioReceived, as the ingest service would."""
    recording_id = new_id()
    ref = await put_bytes(js, AUDIO_BUCKET, recording_id, path.read_bytes())
    duration = fields.pop("duration_s", None)
    if duration is None:
        with contextlib.suppress(Exception):
            duration = duration_of(path)
    return AudioReceived(
        source="tests", recording_id=recording_id, audio=ref, filename=path.name, duration_s=duration, **fields
    )


async def announce(js: JetStreamContext, event: AudioReceived) -> None:
    with tracer().start_as_current_span("ingest", attributes={"kubescribe.recording_id": event.recording_id}):
        await publish_event(js, event)  # carries the recording's traceparent, as ingest's publish does


async def publish_clip(js: JetStreamContext, path: Path, **fields: object) -> AudioReceived:
    event = await prepare_clip(js, path, **fields)
    await announce(js, event)
    return event


async def publish_burst(js: JetStreamContext, paths: list[Path], **fields: object) -> list[AudioReceived]:
    """Upload every clip first, then announce them back to back (a burst, as a batch upload makes)."""
    events = [await prepare_clip(js, path, **fields) for path in paths]
    for event in events:
        await announce(js, event)
    return events


class ReadyCounter:
    """Counts TranscriptReady messages stored in the TRANSCRIPTS stream, per recording."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.sub = None

    async def start(self, js: JetStreamContext) -> None:
        async def handler(msg) -> None:
            import json

            rid = json.loads(msg.data)["recording_id"]
            self.counts[rid] = self.counts.get(rid, 0) + 1

        self.sub = await js.subscribe(
            "kubescribe.transcript.ready",
            cb=handler,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )

    async def stop(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()


@contextlib.asynccontextmanager
async def running_dispatcher(
    settings: Settings, backend: JobBackend, durable: str
) -> AsyncIterator[asyncio.Task[None]]:
    ready = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready, backend=backend, durable=durable, deliver_new=True))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield task
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_outcomes(
    js: JetStreamContext, recording_ids: list[str], timeout: float = 120.0
) -> dict[str, RecordingStatus]:
    store = await StatusStore.open(js)
    deadline = time.monotonic() + timeout
    statuses: dict[str, RecordingStatus] = {}
    while time.monotonic() < deadline:
        for rid in recording_ids:
            status = await store.get(rid)
            if status is not None:
                statuses[rid] = status
        if len(statuses) == len(recording_ids) and all(s.stage in OUTCOMES for s in statuses.values()):
            return statuses
        await asyncio.sleep(0.1)
    stages = {rid: (s.stage.value if s else None) for rid, s in statuses.items()}
    raise AssertionError(f"recordings without an outcome after {timeout}s: {stages}")


async def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    await wait_until_async(predicate, what, timeout)


async def delete_consumer(js: JetStreamContext, durable: str) -> None:
    with contextlib.suppress(Exception):
        await js.delete_consumer(AUDIO_STREAM, durable)


def unique_durable() -> str:
    return f"dispatcher-test-{new_id().lower()[-8:]}"


def synthesize_clips(directory: Path, count: int = 12) -> list[tuple[Path, str]]:
    """``count`` clips of one to three known sentences (mixed lengths, ~3-12 s each)."""
    from tests.speech import SENTENCES, synthesize

    clips = []
    for i in range(count):
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 3))
        clips.append((synthesize(text, directory / f"clip_{i:02d}.wav"), text))
    return clips


async def stored_events(js, subject: str, model, recording_id: str, *, stream: str | None = None, idle_s: float = 10.0):
    """Every stored event of ``recording_id`` on ``subject`` (after JetStream's Nats-Msg-Id dedup).

    Reads up to the last message stored when it is called (``num_pending`` reaching 0), not
    until the subject is quiet for a while: on a loaded machine a quiet period proves nothing.
    The streams are shared with other tests, some of which publish junk on purpose: messages of
    other recordings are skipped before they are validated."""
    stream = stream or await js.find_stream_name_by_subject(subject)
    try:
        await js.get_last_msg(stream, subject)
    except NotFoundError:
        return []
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found = []
    try:
        while True:
            msg = await sub.next_msg(timeout=idle_s)
            if json.loads(msg.data).get("recording_id") == recording_id:
                found.append(model.model_validate_json(msg.data))
            if msg.metadata.num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()
