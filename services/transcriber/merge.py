"""Stitching the chunks of a split recording into one transcript, pure.

Every chunk's segments are already in the recording's absolute time (the transcriber adds its
window start). Neighbouring windows overlap (:mod:`services.transcriber.window`): the stretch
``[next.window_start_s, previous.window_end_s]`` was transcribed by both, and its words must
appear once. The rule, per pair of neighbours A (earlier) and B (later):

1. Words get times by spreading each segment's span over its words in proportion to their
   length (Whisper's segments carry no word times unless asked, which costs extra decoding).
2. A's *tail* is its words timed after the overlap starts (minus ``MARGIN_S`` for that estimate's
   error); B's *head* is its words timed before the overlap ends (plus ``MARGIN_S``).
3. Align tail and head on normalized words (lower case, no punctuation) and take the longest
   common run. If it holds at least ``MIN_RUN`` words, both chunks heard it: keep A's words up
   to the end of the run and B's words after it (A's words after the run are B's head again).
4. Without such a run (an overlap of silence, or words transcribed differently), cut at the middle
   of the overlap by word time: A's words before it, B's words from it.

Segments that lose words keep the share of their span that their remaining words had; empty ones
are dropped; finally every segment starts no earlier than the previous one ended, so the merged
timestamps are monotonic. The merge is deterministic: the same chunk documents always give the
same transcript, which is what makes a second merge (by a retried last chunk) harmless.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from pydantic import BaseModel, ConfigDict, Field

from services.common.documents import Segment

MIN_RUN = 2
"""Words a common run needs to count as the same speech: one shared word ("the") is chance."""
MARGIN_S = 1.0
"""Slack around the overlap for the proportional word-time estimate (off by up to a second)."""


class ChunkTranscript(BaseModel):
    """What one chunk's transcriber stores (key ``chunk_key``): overwritten, never added, on retry."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    index: int
    count: int
    window_start_s: float = Field(
        ge=0, description="Start of the audio transcribed, seconds from the recording's start."
    )
    window_end_s: float = Field(ge=0)
    recording_audio_s: float = Field(ge=0, description="Length of the whole decoded recording.")
    segments: list[Segment] = Field(description="In the recording's absolute time.")
    language: str | None = None
    model: str
    processing_s: float
    job_id: str


def chunk_key(recording_id: str, count: int, index: int) -> str:
    """Object name of a chunk result: per recording, plan (count) and index, so a retry overwrites it."""
    return f"{recording_id}.chunk-{count:02d}-{index:02d}"


@dataclass
class _Word:
    segment: int
    position: int
    text: str
    at_s: float

    @property
    def key(self) -> str:
        return re.sub(r"[^\w']", "", self.text.lower())


def _words(segments: Sequence[Segment]) -> list[_Word]:
    words: list[_Word] = []
    for number, segment in enumerate(segments):
        tokens = segment.text.split()
        total = sum(len(t) for t in tokens) or 1
        done = 0
        for position, token in enumerate(tokens):
            middle = (done + len(token) / 2) / total
            words.append(_Word(number, position, token, segment.start + (segment.end - segment.start) * middle))
            done += len(token)
    return words


def _rebuild(segments: Sequence[Segment], kept: list[_Word]) -> list[Segment]:
    """The segments holding ``kept`` words, each trimmed to them (span shrunk in proportion)."""
    by_segment: dict[int, list[_Word]] = {}
    for word in kept:
        by_segment.setdefault(word.segment, []).append(word)
    out: list[Segment] = []
    for number, words in sorted(by_segment.items()):
        segment = segments[number]
        count = len(segment.text.split())
        first, last = words[0].position, words[-1].position
        span = segment.end - segment.start
        start = segment.start + span * first / count
        end = segment.start + span * (last + 1) / count
        out.append(Segment(start=start, end=end, text=" ".join(w.text for w in words)))
    return out


def stitch(a: Sequence[Segment], b: Sequence[Segment], overlap_start_s: float, overlap_end_s: float) -> list[Segment]:
    """A's segments then B's, the overlap's words once (rule in the module docstring)."""
    words_a, words_b = _words(a), _words(b)
    tail_from = next(
        (i for i, w in enumerate(words_a) if w.at_s >= overlap_start_s - MARGIN_S),
        len(words_a),
    )
    head_to = next((i for i, w in enumerate(words_b) if w.at_s > overlap_end_s + MARGIN_S), len(words_b))
    tail, head = words_a[tail_from:], words_b[:head_to]
    matcher = SequenceMatcher(None, [w.key for w in tail], [w.key for w in head], autojunk=False)
    run = matcher.find_longest_match(0, len(tail), 0, len(head))
    if run.size >= MIN_RUN:
        kept_a = words_a[: tail_from + run.a + run.size]
        kept_b = words_b[run.b + run.size :]
    else:
        cut = (overlap_start_s + overlap_end_s) / 2
        kept_a = [w for w in words_a if w.at_s < cut]
        kept_b = [w for w in words_b if w.at_s >= cut]
    return _rebuild(a, kept_a) + _rebuild(b, kept_b)


def monotonic(segments: Sequence[Segment]) -> list[Segment]:
    """Each segment starts no earlier than the previous one ended (and ends no earlier than it starts)."""
    out: list[Segment] = []
    floor = 0.0
    for segment in segments:
        start = max(segment.start, floor)
        end = max(segment.end, start)
        out.append(Segment(start=start, end=end, text=segment.text))
        floor = end
    return out


def merge_chunks(chunks: Sequence[ChunkTranscript]) -> list[Segment]:
    """The recording's segments from all of its chunks (one plan, every index once), in order."""
    ordered = sorted(chunks, key=lambda c: c.index)
    if [c.index for c in ordered] != list(range(len(ordered))) or any(c.count != len(ordered) for c in ordered):
        raise ValueError(f"chunks {[c.index for c in ordered]} are not one complete plan of {len(ordered)}")
    segments: list[Segment] = list(ordered[0].segments)
    for previous, current in itertools.pairwise(ordered):
        segments = stitch(segments, current.segments, current.window_start_s, previous.window_end_s)
    return monotonic(segments)
