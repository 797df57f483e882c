"""A chunk's audio window: the planner's nominal cuts, widened by the overlap, snapped to silence.

The planner cuts a long recording by time only (it never decodes audio, see
:mod:`services.dispatcher.splitting`); this module, run by the chunk's own transcriber on the
audio it has already decoded, moves each inner edge to a silence so that no word is cut in half:

* the start edge of chunk *k* (k > 0) is ``start_s - overlap_s``, the end edge of chunk *k*
  (not the last) is ``end_s + overlap_s``: neighbours both hear the ``overlap_s`` on either side
  of the cut, and the merge removes the words they both transcribed;
* each edge then moves to the middle of the silence nearest to it within ``±overlap_s``, found
  by Silero VAD (``faster_whisper.vad``) on that ``2 x overlap_s`` of audio only (milliseconds of
  work, where a VAD pass over the whole recording would cost seconds). With no silence there
  (continuous speech) the edge stays where it was and the overlap alignment does the work.

Because an edge moves at most ``overlap_s`` from ``cut ± overlap_s``, a chunk always covers its
nominal window: the neighbours overlap by 0 to ``4 x overlap_s`` and never leave a gap.
"""

from __future__ import annotations

from typing import Any

from services.common.jobspec import ChunkSpec

SAMPLE_RATE = 16000
MIN_SILENCE_MS = 150
"""A pause this long counts as a cut point: longer than the gap between two words of one phrase,
shorter than the pause a speaker makes between sentences."""


def snap_to_silence(audio: Any, at_s: float, tolerance_s: float, *, sample_rate: int = SAMPLE_RATE) -> float:
    """The middle of the silence nearest ``at_s`` within ``±tolerance_s``, else ``at_s`` itself."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    total = len(audio)
    lo = max(0, int((at_s - tolerance_s) * sample_rate))
    hi = min(total, int((at_s + tolerance_s) * sample_rate))
    if hi - lo < sample_rate // 10:
        return min(max(at_s, 0.0), total / sample_rate)
    options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=0)
    speech = get_speech_timestamps(audio[lo:hi], options, sampling_rate=sample_rate)
    gaps: list[tuple[int, int]] = []
    previous_end = 0
    for stretch in speech:
        if stretch["start"] > previous_end:
            gaps.append((previous_end, stretch["start"]))
        previous_end = max(previous_end, stretch["end"])
    if previous_end < hi - lo:
        gaps.append((previous_end, hi - lo))
    if not gaps:
        return at_s
    middles = [(lo + (a + b) / 2) / sample_rate for a, b in gaps]
    return min(middles, key=lambda middle: abs(middle - at_s))


def chunk_window(audio: Any, chunk: ChunkSpec, *, sample_rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """``(start_s, end_s)`` of the audio chunk ``chunk`` transcribes, in the recording's time.

    The first chunk starts at 0 and the last ends at the end of the decoded audio, whatever the
    planner estimated the duration to be (an estimate from the size can be off for compressed audio).
    """
    total_s = len(audio) / sample_rate
    start = 0.0
    if not chunk.first:
        start = snap_to_silence(audio, chunk.start_s - chunk.overlap_s, chunk.overlap_s, sample_rate=sample_rate)
    end = total_s
    if not chunk.last:
        end = snap_to_silence(audio, chunk.end_s + chunk.overlap_s, chunk.overlap_s, sample_rate=sample_rate)
    start, end = max(0.0, min(start, total_s)), max(0.0, min(end, total_s))
    return start, max(start, end)
