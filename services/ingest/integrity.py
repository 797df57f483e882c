"""Does the body hold the audio its header promises? Checked before an upload becomes visible.

The header probe (:mod:`services.ingest.probe`) trusts the container. A WAV header can promise
a megabyte of samples that never arrives, a FLAC STREAMINFO can announce an hour that is cut
after a minute, a header can name a codec its packets are not. Such uploads used to be
accepted and fail later at transcription, after occupying a job slot. Here they are rejected
with a 4xx and a reason, while the upload's chunks are still invisible (``put_stream``'s
``before_commit``), so nothing is left behind.

Three checks, none of which decodes the whole file (a 4 h FLAC would cost tens of CPU seconds):

* the RIFF ``data`` chunk of a WAV declares its length in bytes: the body must carry it;
* the first packets must decode to at least one sample (zero samples, or a codec that lies);
* the last second before the declared end must decode and end near it (a truncated body
  whose container declares the full length, as FLAC and MP4 do).

Ogg, and MP3 without a Xing header, compute their duration from what is there, so a cut
file of those formats is just a shorter recording and passes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import av

from services.ingest.errors import ApiError
from services.ingest.probe import FAST_OPTIONS, AudioInfo

HEAD_PACKETS = 64
"""Packets decoded from the start before concluding the audio holds no samples. A few
encoders put empty or priming packets first (AAC's 1024-sample priming frame, Vorbis headers);
64 is far past those and still a few milliseconds of work."""

TAIL_WINDOW_S = 1.0
"""How far before the declared end the tail check seeks; one second holds several frames of
every codec we accept (the longest, Vorbis/AAC, are ~0.1 s)."""

TAIL_TOLERANCE_S = 0.5
"""How much shorter than declared the decoded end may be: encoder padding and rounding of the
container's duration are a few frames at most."""

STREAMING_WAV_SIZES = (0, 0xFFFFFFFF)
"""``data`` sizes written by encoders that stream (``ffmpeg -f wav pipe:``): length unknown, not a lie."""


def check_audio(source: Path | BinaryIO, info: AudioInfo, *, max_duration_s: float | None) -> None:
    """Raise :class:`ApiError` (4xx with a reason) unless the body carries decodable audio as declared.

    Blocking (FFmpeg): call it through ``asyncio.to_thread``.
    """
    if max_duration_s is not None and info.duration_s is not None and info.duration_s > max_duration_s:
        raise ApiError(
            422,
            "too_long",
            f"the recording lasts {info.duration_s:.1f} s; the limit is {max_duration_s:.0f} s "
            "(KUBESCRIBE_INGEST_MAX_DURATION_S)",
        )
    if info.container == "wav":
        _check_wav_length(source)
    try:
        _check_decoding(source, info, FAST_OPTIONS)
    except ApiError:  # the verdict is the full probe's: a format the short probe misreads is not rejected
        _check_decoding(source, info, None)


def _check_decoding(source: Path | BinaryIO, info: AudioInfo, options: dict[str, str] | None) -> None:
    """Decode the head and the tail. FFmpeg's default probe of a container (5 MB or 5 s of packets)
    was 3 ms of the ingest's ~10 ms of CPU per 100 KiB WAV upload, on top of the header probe's own
    open: the short probe (``FAST_OPTIONS``, as the header probe uses) costs 0.3 ms."""
    _rewind(source)
    try:
        container = av.open(_target(source), mode="r", metadata_errors="ignore", options=options)
    except (av.FFmpegError, ValueError) as exc:
        raise ApiError(415, "not_audio", f"the {info.container} container cannot be reopened: {exc}") from exc
    try:
        if not container.streams.audio:
            raise ApiError(415, "not_audio", f"the {info.container} container has no audio stream when reopened")
        stream = container.streams.audio[0]
        _check_head(container, stream, info)
        if info.duration_s and info.duration_s > TAIL_WINDOW_S:
            _check_tail(container, stream, info)
    finally:
        container.close()


def _check_head(container: av.container.InputContainer, stream: av.audio.AudioStream, info: AudioInfo) -> None:
    samples = 0
    try:
        for index, packet in enumerate(container.demux(stream)):
            if index >= HEAD_PACKETS:
                break
            for frame in packet.decode():
                samples += frame.samples
            if samples:
                return
    except (av.FFmpegError, ValueError) as exc:
        raise ApiError(
            415,
            "codec_mismatch",
            f"the {info.container} header names codec {info.codec!r} but its data does not decode as it: {exc}",
        ) from exc
    raise ApiError(
        422,
        "no_samples",
        f"the {info.container}/{info.codec} audio decodes to zero samples: the body carries no audio",
    )


def _check_tail(container: av.container.InputContainer, stream: av.audio.AudioStream, info: AudioInfo) -> None:
    declared = float(info.duration_s or 0.0)
    end = 0.0
    problem = ""
    try:
        assert stream.time_base is not None
        container.seek(int((declared - TAIL_WINDOW_S) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is not None and frame.time_base is not None and frame.sample_rate:
                end = max(end, float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate)
    except (av.FFmpegError, ValueError) as exc:
        problem = f" ({exc})"
    if end < declared - TAIL_TOLERANCE_S:
        raise ApiError(
            422,
            "truncated",
            f"the {info.container} header declares {declared:.2f} s of audio but the body ends at "
            f"{end:.2f} s{problem}: the upload is truncated",
        )


def _check_wav_length(source: Path | BinaryIO) -> None:
    """Compare the RIFF ``data`` chunk's declared size with the bytes that follow it."""
    _rewind(source)
    handle = open(source, "rb") if isinstance(source, Path) else source  # noqa: SIM115 (closed below)
    try:
        handle.seek(0, 2)
        total = handle.tell()
        handle.seek(12)  # "RIFF" size "WAVE"
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return  # no data chunk: FFmpeg accepted it, let the decode checks judge
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                available = total - handle.tell()
                if size not in STREAMING_WAV_SIZES and available < size:
                    raise ApiError(
                        422,
                        "truncated",
                        f"the WAV header declares {size} bytes of samples but the body carries {available}: "
                        "the upload is truncated",
                    )
                return
            handle.seek(size + (size & 1), 1)  # chunks are padded to an even length
    finally:
        if isinstance(source, Path):
            handle.close()


def _rewind(source: Path | BinaryIO) -> None:
    if not isinstance(source, Path):
        source.seek(0)


def _target(source: Path | BinaryIO) -> str | BinaryIO:
    return str(source) if isinstance(source, Path) else source
