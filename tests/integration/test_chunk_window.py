"""A chunk's window edges snap to silence (Silero VAD on real espeak-ng speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.jobspec import ChunkSpec
from services.transcriber.engine import SAMPLE_RATE, decode
from services.transcriber.window import chunk_window, snap_to_silence
from tests.speech import SENTENCES, synthesize

pytestmark = pytest.mark.whisper


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    path = synthesize(" ".join(SENTENCES[:4]), tmp_path_factory.mktemp("window") / "speech.wav")
    return decode(Path(path))


def loudness(audio: np.ndarray, at_s: float, half_width_s: float = 0.05) -> float:
    lo, hi = int((at_s - half_width_s) * SAMPLE_RATE), int((at_s + half_width_s) * SAMPLE_RATE)
    return float(np.sqrt(np.mean(audio[max(0, lo) : hi] ** 2)))


def test_an_edge_moves_into_the_nearest_pause(speech: np.ndarray) -> None:
    speaking = float(np.sqrt(np.mean(speech**2)))
    total_s = len(speech) / SAMPLE_RATE
    snapped = [snap_to_silence(speech, at, 2.0) for at in np.arange(3.0, total_s - 3.0, 1.5)]
    assert all(abs(s - at) <= 2.0 + 1e-6 for s, at in zip(snapped, np.arange(3.0, total_s - 3.0, 1.5), strict=False))
    quiet = [s for s in snapped if loudness(speech, s) < 0.1 * speaking]
    assert len(quiet) >= 0.8 * len(snapped), f"edges in speech: {[(s, loudness(speech, s)) for s in snapped]}"


def test_windows_cover_their_nominal_cuts_and_the_ends(speech: np.ndarray) -> None:
    total_s = len(speech) / SAMPLE_RATE
    cut = round(total_s / 2, 3)
    first = chunk_window(speech, ChunkSpec(index=0, count=2, start_s=0.0, end_s=cut, overlap_s=1.0))
    last = chunk_window(speech, ChunkSpec(index=1, count=2, start_s=cut, end_s=total_s - 5.0, overlap_s=1.0))
    assert first[0] == 0.0 and cut <= first[1] <= cut + 2.0
    assert cut - 2.0 <= last[0] <= cut and last[1] == pytest.approx(total_s)  # the last runs to the real end


def test_a_window_past_the_end_of_the_audio_is_empty(speech: np.ndarray) -> None:
    total_s = len(speech) / SAMPLE_RATE
    start, end = chunk_window(
        speech, ChunkSpec(index=2, count=3, start_s=total_s + 10.0, end_s=total_s + 20.0, overlap_s=1.0)
    )
    assert start == end == pytest.approx(total_s)
