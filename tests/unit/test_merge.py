"""Stitching a split recording's chunks: the overlap's words once, timestamps absolute and monotonic."""

from __future__ import annotations

import itertools

import pytest

from services.common.documents import Segment
from services.transcriber.merge import ChunkTranscript, chunk_key, merge_chunks, monotonic, stitch


def seg(start: float, end: float, text: str) -> Segment:
    return Segment(start=start, end=end, text=text)


def chunk(index: int, count: int, start: float, end: float, segments: list[Segment]) -> ChunkTranscript:
    return ChunkTranscript(
        recording_id="R",
        index=index,
        count=count,
        window_start_s=start,
        window_end_s=end,
        recording_audio_s=30.0,
        segments=segments,
        model="tiny.en",
        processing_s=1.0,
        job_id=f"j{index}",
    )


def said(text: str) -> list[str]:
    return text.split()


def words(segments: list[Segment]) -> list[str]:
    return " ".join(s.text for s in segments).split()


def test_the_overlap_words_heard_by_both_chunks_appear_once() -> None:
    # chunk A heard up to 12 s, chunk B from 8 s: "the quick brown fox" is in both
    a = [seg(0.0, 5.0, "One two three four five."), seg(5.0, 12.0, "Six seven the quick brown fox")]
    b = [seg(8.0, 11.5, "the quick brown fox jumps"), seg(11.5, 15.0, "over the lazy dog.")]
    merged = stitch(a, b, overlap_start_s=8.0, overlap_end_s=12.0)
    assert words(merged) == said("One two three four five. Six seven the quick brown fox jumps over the lazy dog.")


def test_alignment_ignores_case_and_punctuation_and_keeps_the_earlier_spelling() -> None:
    a = [seg(0.0, 6.0, "We agreed to cut travel costs.")]
    b = [seg(3.0, 9.0, "cut travel costs, and Maria will send")]
    merged = stitch(a, b, overlap_start_s=3.0, overlap_end_s=6.0)
    assert words(merged) == said("We agreed to cut travel costs. and Maria will send")


def test_a_half_heard_word_at_the_edge_is_dropped_with_the_duplicate_tail() -> None:
    # A's last word is cut off at its window edge ("jum"); B heard it whole
    a = [seg(0.0, 10.0, "alpha beta gamma delta the quick brown fox jum")]
    b = [seg(6.0, 14.0, "quick brown fox jumps over")]
    merged = stitch(a, b, overlap_start_s=6.0, overlap_end_s=10.0)
    assert words(merged) == said("alpha beta gamma delta the quick brown fox jumps over")


def test_without_a_common_run_the_overlap_is_cut_in_the_middle_by_word_time() -> None:
    a = [seg(0.0, 4.0, "first second"), seg(4.0, 10.0, "third ghost")]
    b = [seg(6.0, 9.0, "phantom"), seg(9.0, 12.0, "fourth fifth")]
    merged = stitch(a, b, overlap_start_s=6.0, overlap_end_s=10.0)
    # cut at 8.0: "ghost" is at ~8.4 (dropped), "phantom" at 7.5 (dropped)
    assert words(merged) == ["first", "second", "third", "fourth", "fifth"]


def test_a_single_common_word_is_not_an_alignment() -> None:
    a = [seg(0.0, 10.0, "one two the")]
    b = [seg(8.0, 12.0, "the three")]
    merged = stitch(a, b, overlap_start_s=8.0, overlap_end_s=10.0)
    # falls back to the middle cut at 9.0: A's "the" (~8.9) stays, B's "the" (~8.9) goes
    assert words(merged) == ["one", "two", "the", "three"]


def test_merged_timestamps_are_absolute_ordered_and_monotonic() -> None:
    chunks = [
        chunk(0, 3, 0.0, 12.0, [seg(0.0, 6.0, "a b c d"), seg(6.0, 12.0, "e f g h")]),
        chunk(1, 3, 8.0, 22.0, [seg(8.0, 14.0, "g h i j"), seg(14.0, 22.0, "k l m n")]),
        chunk(2, 3, 18.0, 30.0, [seg(18.0, 24.0, "m n o p"), seg(24.0, 30.0, "q r")]),
    ]
    merged = merge_chunks(list(reversed(chunks)))  # the order chunks are read in does not matter
    assert words(merged) == list("abcdefghijklmnopqr")
    assert all(s.start <= s.end for s in merged)
    assert all(x.end <= y.start for x, y in itertools.pairwise(merged))
    assert merged[0].start == 0.0 and merged[-1].end == 30.0
    assert merge_chunks(chunks) == merge_chunks(chunks)  # deterministic: a second merge is the same


def test_an_incomplete_or_mixed_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="not one complete plan"):
        merge_chunks([chunk(0, 3, 0.0, 10.0, []), chunk(2, 3, 20.0, 30.0, [])])
    with pytest.raises(ValueError, match="not one complete plan"):
        merge_chunks([chunk(0, 2, 0.0, 10.0, []), chunk(1, 3, 10.0, 20.0, [])])


def test_monotonic_clamps_a_segment_that_starts_inside_the_previous_one() -> None:
    out = monotonic([seg(0.0, 5.0, "a"), seg(4.0, 4.5, "b"), seg(6.0, 7.0, "c")])
    assert [(s.start, s.end) for s in out] == [(0.0, 5.0), (5.0, 5.0), (6.0, 7.0)]


def test_chunk_keys_are_per_recording_plan_and_index() -> None:
    assert chunk_key("R", 2, 1) == chunk_key("R", 2, 1)
    assert len({chunk_key("R", 2, 0), chunk_key("R", 2, 1), chunk_key("R", 3, 1), chunk_key("S", 2, 1)}) == 4
