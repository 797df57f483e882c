"""Synthetic audio: right length, real speech, cached by content hash."""

from __future__ import annotations

import pytest

from loadgen.audio import materialize, wav_duration
from loadgen.errors import AudioSynthesisError
from loadgen.trace import FileAudio, NoiseAudio, SpeechAudio, ToneAudio
from tests.speech import duration_of, require_tools


def test_tone_and_noise_have_the_requested_duration(tmp_path):
    require_tools("sox")
    tone = materialize(ToneAudio(duration_s=1.5), cache_dir=tmp_path)
    noise = materialize(NoiseAudio(duration_s=0.75, seed=3), cache_dir=tmp_path)
    assert duration_of(tone) == pytest.approx(1.5, abs=0.01)
    assert duration_of(noise) == pytest.approx(0.75, abs=0.01)
    assert wav_duration(tone) == pytest.approx(1.5, abs=0.001)
    assert materialize(NoiseAudio(duration_s=0.75, seed=3), cache_dir=tmp_path).read_bytes() == noise.read_bytes()
    assert materialize(NoiseAudio(duration_s=0.75, seed=4), cache_dir=tmp_path) != noise


def test_speech_is_rendered_once_and_reused(tmp_path):
    require_tools("espeak-ng", "sox")
    spec = SpeechAudio(text="The budget review is on Thursday.")
    first = materialize(spec, cache_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    again = materialize(SpeechAudio(text="The budget review is on Thursday."), cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime
    assert 1.0 < duration_of(first) < 5.0
    assert [p.name for p in tmp_path.iterdir()] == [first.name], "no temporary files left behind"


def test_file_specs_resolve_relative_to_the_trace(tmp_path):
    clip = materialize(ToneAudio(duration_s=0.2), cache_dir=tmp_path / "cache")
    (tmp_path / "clips").mkdir()
    target = tmp_path / "clips" / "a.wav"
    target.write_bytes(clip.read_bytes())
    assert materialize(FileAudio(path="clips/a.wav"), base_dir=tmp_path) == target
    with pytest.raises(AudioSynthesisError, match="does not exist"):
        materialize(FileAudio(path="clips/missing.wav"), base_dir=tmp_path)
