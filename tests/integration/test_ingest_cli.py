"""``kubescribe submit`` as a user runs it: a child process against a real ingest process and nats-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from services.common.documents import Segment, Summary, Transcript
from services.common.events import Stage
from services.common.messaging import report_failure
from services.common.status import RecordingStage, StatusStore
from services.common.storage import put_bytes
from tests.integration.ingest_support import ingest_subprocess
from tests.speech import SENTENCES, synthesize

pytestmark = [pytest.mark.nats, pytest.mark.slow]

# Only the submit command: the test does not depend on the other services' CLI modules importing.
CLI = (
    "import typer; from services.ingest.cli import register; app = typer.Typer(); "
    "app.callback()(lambda: None); register(app); app()"
)


def submit(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "submit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def _finish(js, recording_id: str, text: str) -> None:
    transcript = Transcript(
        recording_id=recording_id,
        text=text,
        segments=[Segment(start=0, end=1, text=text)],
        model="tiny.en",
        audio_s=1,
        processing_s=0.1,
        job_id="job",
    )
    summary = Summary(
        recording_id=recording_id,
        text="Summary: " + text,
        model="m",
        ttft_s=0,
        generation_s=0,
        tokens_in=1,
        tokens_out=1,
    )
    t_ref = await put_bytes(js, "transcripts", recording_id, transcript.model_dump_json().encode())
    s_ref = await put_bytes(js, "summaries", recording_id, summary.model_dump_json().encode())
    store = await StatusStore.open(js)
    await store.advance(recording_id, RecordingStage.summarized, transcript=t_ref, summary=s_ref)


async def _first_line(process: subprocess.Popen) -> str:
    return (await asyncio.to_thread(process.stdout.readline)).strip()


async def test_submit_over_http_and_wait(nats_server, js, tmp_path) -> None:
    clip = synthesize(SENTENCES[3], tmp_path / "call.flac")
    with ingest_subprocess(nats_server.url, tmp_path) as (_, base):
        process = submit(str(clip), "--url", base, "--wait", "--tenant", "acme", "--timeout", "60")
        recording_id, name = (await _first_line(process)).split()
        assert name == "call.flac" and len(recording_id) == 26
        await _finish(js, recording_id, "The customer reported a crash.")
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
        assert process.returncode == 0, err
        assert "The customer reported a crash." in out and "Summary: The customer reported a crash." in out

        bad = tmp_path / "notes.wav"
        bad.write_text("not audio\n" * 100)
        failed = submit(str(bad), "--url", base)
        _, err = await asyncio.to_thread(failed.communicate, timeout=60)
        assert failed.returncode == 1
        assert "notes.wav: HTTP 415" in err and "Traceback" not in err


async def test_submit_over_nats_reports_a_failed_recording(nats_server, js, tmp_path) -> None:
    clip = synthesize(SENTENCES[4], tmp_path / "standup.ogg")
    process = submit(str(clip), "--nats", nats_server.url, "--wait", "--timeout", "60")
    recording_id, _ = (await _first_line(process)).split()
    await report_failure(
        js,
        stage=Stage.transcribe,
        reason="model crashed twice",
        retryable=False,
        source="tests",
        recording_id=recording_id,
    )
    _, err = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 1
    assert f"standup.ogg ({recording_id}): transcribe: model crashed twice" in " ".join(err.split())
    assert "Traceback" not in err


def test_submit_usage_errors(tmp_path) -> None:
    clip = tmp_path / "x.wav"
    clip.write_bytes(b"RIFF")
    process = submit(str(clip), "--url", "http://127.0.0.1:9", "--nats", "nats://127.0.0.1:9")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "either --url or --nats" in err
    unreachable = submit(str(clip), "--url", "http://127.0.0.1:9")
    _, err = unreachable.communicate(timeout=60)
    assert unreachable.returncode == 1 and "cannot reach" in err and "Traceback" not in err
