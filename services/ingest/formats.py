"""Transcript renderings: plain text, SubRip (SRT) and WebVTT, from the stored JSON document."""

from __future__ import annotations

from collections.abc import Callable

from services.common.documents import Transcript

MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_txt(transcript: Transcript) -> str:
    """The text alone, one segment per line (the full ``text`` when there are no segments)."""
    lines = [segment.text.strip() for segment in transcript.segments if segment.text.strip()]
    return ("\n".join(lines) if lines else transcript.text.strip()) + "\n"


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each cue."""
    cues = []
    for index, segment in enumerate(transcript.segments, start=1):
        start, end = _timestamp(segment.start, ","), _timestamp(max(segment.end, segment.start), ",")
        cues.append(f"{index}\n{start} --> {end}\n{segment.text.strip()}\n")
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times."""
    cues = ["WEBVTT\n"]
    for segment in transcript.segments:
        start, end = _timestamp(segment.start, "."), _timestamp(max(segment.end, segment.start), ".")
        cues.append(f"{start} --> {end}\n{segment.text.strip()}\n")
    return "\n".join(cues)


RENDERERS: dict[str, Callable[[Transcript], str]] = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}
