"""Pure pieces of ingest: transcript formats, the header probe, the streaming body readers, auth."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from services.common.documents import Segment, Transcript
from services.common.errors import PermanentError, TemporaryError, UnsupportedAudioError
from services.ingest.auth import BearerAuth
from services.ingest.errors import ApiError, UnavailableError
from services.ingest.formats import to_srt, to_txt, to_vtt
from services.ingest.keys import KeyRing
from services.ingest.probe import probe_file
from services.ingest.upload import UploadError, open_upload
from tests.speech import SENTENCES, duration_of, synthesize

TRANSCRIPT = Transcript(
    recording_id="01JDZ8W3V0R4N8M0Q2K5T7Y9AB",
    text="One. Two.",
    segments=[Segment(start=0.0, end=1.25, text=" One."), Segment(start=3661.5, end=3662.0, text=" Two.")],
    model="tiny.en",
    audio_s=3662.0,
    processing_s=1.0,
    job_id="j",
)


def test_formats() -> None:
    assert to_txt(TRANSCRIPT) == "One.\nTwo.\n"
    assert to_srt(TRANSCRIPT) == "1\n00:00:00,000 --> 00:00:01,250\nOne.\n\n2\n01:01:01,500 --> 01:01:02,000\nTwo.\n"
    assert (
        to_vtt(TRANSCRIPT) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nOne.\n\n01:01:01.500 --> 01:01:02.000\nTwo.\n"
    )
    empty = TRANSCRIPT.model_copy(update={"segments": [], "text": " silence "})
    assert to_txt(empty) == "silence\n" and to_vtt(empty) == "WEBVTT\n"


@pytest.mark.parametrize("fmt,container", [("wav", "wav"), ("flac", "flac"), ("mp3", "mp3"), ("ogg", "ogg")])
def test_probe_reads_the_header(tmp_path, fmt, container) -> None:
    path = synthesize(SENTENCES[2], tmp_path / f"s.{fmt}", rate=22050)
    info = probe_file(path)
    assert info.container == container and info.sample_rate == 22050 and info.channels == 1
    assert info.duration_s == pytest.approx(duration_of(path), abs=0.05)


def test_probe_rejects_with_a_reason(tmp_path) -> None:
    text = tmp_path / "notes"  # uploads are spooled without an extension: FFmpeg goes by content
    text.write_text("minutes of the meeting\n" * 20)
    with pytest.raises(UnsupportedAudioError, match="not a readable audio container"):
        probe_file(text)
    named = tmp_path / "notes.txt"  # by name FFmpeg calls text a "tty" video: still no audio stream
    named.write_text("minutes of the meeting\n" * 20)
    with pytest.raises(UnsupportedAudioError, match="no audio stream in the tty container"):
        probe_file(named)


async def _body(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(upload) -> bytes:
    await upload.prime()
    return b"".join([piece async for piece in upload.chunks()])


@pytest.mark.parametrize("size", [1, 3, 17, 4096])
async def test_multipart_streams_only_the_file_field(size) -> None:
    audio = bytes(range(256)) * 40 + b"\r\n--notquite"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="tenant"\r\n\r\nacme\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="../../etc/m.flac"\r\n'
        b"Content-Type: audio/flac\r\n\r\n" + audio + b"\r\n--XyZ--\r\n"
    )
    upload = open_upload(_body(body, size), "multipart/form-data; boundary=XyZ")
    assert await _read(upload) == audio
    assert (upload.filename, upload.content_type) == ("m.flac", "audio/flac")


async def test_raw_body_and_errors() -> None:
    assert await _read(open_upload(_body(b"abc" * 10, 4), "audio/wav; rate=16000")) == b"abc" * 10
    with pytest.raises(UploadError) as empty:
        await _read(open_upload(_body(b"", 4), "audio/wav"))
    assert empty.value.status == 400
    with pytest.raises(UploadError) as wrong:
        open_upload(_body(b"x", 1), "application/json")
    assert wrong.value.status == 415
    with pytest.raises(UploadError, match="boundary"):
        open_upload(_body(b"x", 1), "multipart/form-data")


def _request(authorization: str | None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers})


async def test_bearer_auth() -> None:
    await BearerAuth(KeyRing(None))(_request(None))
    auth = BearerAuth(KeyRing(None, "t0ken"))
    await auth(_request("Bearer t0ken"))
    await auth(_request("bearer t0ken"))
    for bad in (None, "Bearer t0ke", "Basic t0ken", "Bearer t0ken2", "t0ken"):
        with pytest.raises(HTTPException) as exc:
            await auth(_request(bad))
        assert exc.value.status_code == 401


def test_openapi_document_describes_the_api() -> None:
    from services.ingest.openapi import schema_files

    document = schema_files()["kubescribe.ingest.openapi.json"]
    paths = document["paths"]
    assert {"/v1/recordings", "/v1/recordings/{recording_id}", "/v1/recordings/{recording_id}/transcript"} <= set(paths)
    upload = paths["/v1/recordings"]["post"]
    assert {"audio/*", "multipart/form-data"} <= set(upload["requestBody"]["content"])
    assert {"202", "401", "413", "415", "422"} <= set(upload["responses"])
    assert schema_files() == {"kubescribe.ingest.openapi.json": document}  # deterministic


def test_ingest_errors_sit_under_the_project_root() -> None:
    """A rejected request is permanent (the same request gets the same answer), a 503 temporary;
    both keep the HTTP status the API answers with."""
    assert issubclass(UploadError, ApiError) and issubclass(ApiError, PermanentError)
    assert issubclass(UnavailableError, TemporaryError)
    rejected = UploadError(415, "unsupported_media_type", "send audio/*")
    assert (rejected.status, rejected.code, rejected.detail, str(rejected)) == (
        415,
        "unsupported_media_type",
        "send audio/*",
        "send audio/*",
    )
    unavailable = UnavailableError("NATS is unavailable; retry")
    assert (unavailable.status, unavailable.code, unavailable.detail) == (
        503,
        "unavailable",
        "NATS is unavailable; retry",
    )
