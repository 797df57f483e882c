"""Splitting a long recording into chunks, pure: how many windows, and where they are cut.

One long recording on one slot leaves the other slots (locally) or MIG slices (on a cluster)
idle for its whole duration; cut into N windows it finishes up to N times sooner. The decision
is :func:`split_plan`, a pure function of the recording's duration, the free slots and the
settings, so that the dispatcher's planner and ``kubescribe plan``'s capacity model (which
drives the real planner on a virtual clock) make the same decision from the same inputs.

Where the cut points are computed, and why: the planner cuts by **time only** (equal windows),
and the transcriber of each chunk snaps its inner edges to the nearest silence (Silero VAD from
``faster_whisper.vad``, run on its own audio around each edge, see
:mod:`services.transcriber.window`). The dispatcher never decodes audio: it would have to
download and decode a long recording on its hot path, before any slot starts, and a VAD pass
over ten minutes costs seconds of a core that every other recording is waiting on. The chunk's
transcriber already has the audio decoded, and running VAD on ±``overlap_s`` around two edges
costs milliseconds. Each inner edge is widened by ``overlap_s`` before snapping, so neighbours
both hear the words at a cut; :mod:`services.transcriber.merge` removes the duplicates.

How many chunks: as many as there are free slots (spreading over what is idle now), or
``split_max_chunks`` when no slot is free or the backend cannot tell (Kubernetes: Kueue admits
chunks as slices free up, so more, smaller chunks spread better), never so many that a chunk is
shorter than ``split_min_chunk_s``. A recording that would get fewer than two chunks is not split.
"""

from __future__ import annotations

import math

from services.common.jobspec import ChunkSpec, JobRecording
from services.common.settings import DispatcherSettings

__all__ = ["chunk_count", "split_plan", "split_recording"]


def chunk_count(duration_s: float, free_slots: int | None, settings: DispatcherSettings) -> int:
    """How many chunks a recording of ``duration_s`` gets (1: not split)."""
    if settings.split_threshold_s <= 0 or duration_s <= settings.split_threshold_s:
        return 1
    wanted = free_slots if free_slots else settings.split_max_chunks
    by_length = math.floor(duration_s / max(settings.split_min_chunk_s, 1e-9))
    count = min(wanted, settings.split_max_chunks, by_length)
    return count if count >= 2 else 1


def split_plan(duration_s: float, free_slots: int | None, settings: DispatcherSettings) -> list[ChunkSpec]:
    """The chunk windows of a recording (equal nominal cuts), or ``[]`` when it stays whole.

    Pure and deterministic: the same duration, free slots and settings give the same plan, which
    the capacity planner relies on to model a split as N jobs of ``duration_s / N`` each.
    """
    count = chunk_count(duration_s, free_slots, settings)
    if count < 2:
        return []
    width = duration_s / count
    return [
        ChunkSpec(
            index=i,
            count=count,
            start_s=round(i * width, 3),
            end_s=round(duration_s if i == count - 1 else (i + 1) * width, 3),
            overlap_s=settings.split_overlap_s,
        )
        for i in range(count)
    ]


def split_recording(
    recording: JobRecording, duration_s: float, free_slots: int | None, settings: DispatcherSettings
) -> list[JobRecording]:
    """``recording`` as one item per chunk (same recording id, trace and event), or ``[]`` to keep it whole."""
    return [recording.model_copy(update={"chunk": chunk}) for chunk in split_plan(duration_s, free_slots, settings)]
