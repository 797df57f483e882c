"""Audio header probe with PyAV: container, codec, duration and sample rate, without decoding.

Opening a container reads its headers (and, for formats without a length field such as Ogg,
seeks to the last page); no audio frame is decoded, so probing a 500 MiB file costs
milliseconds. Anything PyAV cannot open, or that has no audio stream, is rejected with a
reason the HTTP layer returns as 415.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

from services.common.errors import UnsupportedAudioError


@dataclass(frozen=True)
class AudioInfo:
    """What the probe learnt from the container header."""

    container: str
    codec: str
    duration_s: float | None
    sample_rate: int | None
    channels: int | None


FAST_OPTIONS = {"probesize": "8192", "analyzeduration": "0"}
"""FFmpeg's defaults read up to 5 MB / 5 s of packets to guess stream parameters, which costs
5 ms of CPU on a PCM WAV whose header already says everything. The common formats (WAV, FLAC,
MP3, Ogg) probe correctly from 8 KiB; anything that does not is probed again with the defaults."""


def probe_file(source: Path | str | BinaryIO) -> AudioInfo:
    """Probe a file (path or seekable binary file object); raises :class:`UnsupportedAudioError`
    with a reason for non-audio input.

    Blocking (file I/O in FFmpeg): call it through ``asyncio.to_thread`` from async code.
    """
    try:
        info = _probe(source, FAST_OPTIONS)
        if info.sample_rate and info.duration_s is not None:
            return info
    except UnsupportedAudioError:
        pass
    if not isinstance(source, (str, Path)):
        source.seek(0)
    return _probe(source, None)


def _probe(source: Path | str | BinaryIO, options: dict[str, str] | None) -> AudioInfo:
    target = str(source) if isinstance(source, (str, Path)) else source
    try:
        container = av.open(target, mode="r", metadata_errors="ignore", options=options)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UnsupportedAudioError(f"not a readable audio container: {_reason(exc)}") from exc
    try:
        streams = list(container.streams.audio)
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise UnsupportedAudioError(
                f"no audio stream in the {container.format.name} container (streams: {', '.join(kinds)})"
            )
        stream = streams[0]
        codec = stream.codec_context.name if stream.codec_context else None
        if not codec:
            raise UnsupportedAudioError(f"unknown audio codec in the {container.format.name} container")
        return AudioInfo(
            container=container.format.name,
            codec=codec,
            duration_s=_duration(container, stream),
            sample_rate=stream.sample_rate or None,
            channels=stream.channels or None,
        )
    finally:
        container.close()


def _duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return round(seconds, 3)
    if container.duration is not None and container.duration > 0:
        return round(container.duration / av.time_base, 3)
    return None


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the temp file path, which means nothing to the client."""
    message = getattr(exc, "strerror", None) or str(exc)
    return str(message).split(": '")[0].strip() or type(exc).__name__
