"""The transcriber publishes TranscriptReady before the status says transcribed (chaos found this).

"Transcribed" tells the dispatcher that a recording needs nothing more from any job, and it acks
the recording whatever the job's exit status. A transcriber killed between a status write and a
later publish therefore lost the event for good: the chaos test saw recordings stuck at
"transcribed". Here the kill is a failing call at each point of the sequence, on the real
nats-server and the real tiny.en.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.ids import new_id
from services.common.jobspec import JobRecording, TranscriptionJob
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import put_bytes
from services.common.topology import AUDIO_BUCKET
from services.transcriber import job as transcriber_job
from services.transcriber.job import run_job
from tests.integration.test_split_recordings import stored_ready_events
from tests.speech import SENTENCES, duration_of, synthesize

pytestmark = [pytest.mark.nats, pytest.mark.whisper]


class Killed(Exception):
    """Stands for the SIGKILL: the job stops at this call and nothing after it runs."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(SENTENCES[0], tmp_path_factory.mktemp("order") / "clip.wav")


async def _job(js, clip: Path, attempt: int = 1) -> TranscriptionJob:
    recording_id = new_id()
    ref = await put_bytes(js, AUDIO_BUCKET, recording_id, clip.read_bytes())
    await (await StatusStore.open(js)).update(
        recording_id, lambda s: s, create=lambda: RecordingStatus(recording_id=recording_id)
    )
    recording = JobRecording(recording_id=recording_id, audio=ref, duration_s=duration_of(clip))
    return TranscriptionJob(model="tiny.en", profile="cpu", recordings=[recording], attempt=attempt)


def _retry(job: TranscriptionJob) -> TranscriptionJob:
    return job.model_copy(update={"job_id": new_id().lower(), "attempt": job.attempt + 1})


async def test_killed_before_the_publish_leaves_the_status_unfinished(js, whisper_engine, clip, monkeypatch) -> None:
    job = await _job(js, clip)
    [recording] = job.recordings

    async def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(transcriber_job, "_publish_ready", killed)
        with pytest.raises(Killed):
            await run_job(js, job, whisper_engine)
    status = await (await StatusStore.open(js)).get(recording.recording_id)
    # Not "transcribed": the dispatcher sees a crashed job with work left, and retries it.
    assert status is not None and status.stage is not RecordingStage.transcribed
    assert await stored_ready_events(js, recording.recording_id) == []
    await run_job(js, _retry(job), whisper_engine)
    status = await (await StatusStore.open(js)).get(recording.recording_id)
    assert status is not None and status.stage is RecordingStage.transcribed
    assert len(await stored_ready_events(js, recording.recording_id)) == 1


async def test_killed_after_the_publish_the_retry_sends_no_second_event(js, whisper_engine, clip, monkeypatch) -> None:
    job = await _job(js, clip)
    [recording] = job.recordings
    real_advance = StatusStore.advance

    async def killed_at_transcribed(self, recording_id, stage, **fields):
        if stage is RecordingStage.transcribed:
            raise Killed
        return await real_advance(self, recording_id, stage, **fields)

    with monkeypatch.context() as patch:
        patch.setattr(StatusStore, "advance", killed_at_transcribed)
        with pytest.raises(Killed):
            await run_job(js, job, whisper_engine)
    [event] = await stored_ready_events(js, recording.recording_id)  # already out: the summarizer can go on
    assert event.word_count > 0
    await run_job(js, _retry(job), whisper_engine)
    status = await (await StatusStore.open(js)).get(recording.recording_id)
    assert status is not None and status.stage is RecordingStage.transcribed
    assert [e.id for e in await stored_ready_events(js, recording.recording_id)] == [event.id]
