"""The transcriber's engine on real speech: bundled tiny.en, espeak-ng clips in every format."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigurationError, UnsupportedAudioError
from services.common.settings import TranscriberSettings
from services.transcriber.engine import BUNDLED_MODEL, bundled_model_dir, resolve_model
from tests.integration._dispatch import wer
from tests.speech import SENTENCES, duration_of, synthesize

pytestmark = pytest.mark.whisper


@pytest.mark.parametrize(
    ("suffix", "rate"),
    # MP3 at 16 kHz gets a very low bitrate that hurts tiny.en; uploads are 44.1 kHz in practice.
    [(".wav", 16000), (".flac", 16000), (".ogg", 16000), (".mp3", 44100)],
)
def test_transcripts_match_the_spoken_text(whisper_engine, tmp_path: Path, suffix: str, rate: int) -> None:
    hypotheses = []
    for i, sentence in enumerate(SENTENCES):
        path = synthesize(sentence, tmp_path / f"s{i}{suffix}", rate=rate)
        result = whisper_engine.transcribe(path)
        assert result.audio_s == pytest.approx(duration_of(path), abs=0.3)
        assert result.segments and all(s.end >= s.start for s in result.segments)
        hypotheses.append(result.text)
    assert wer(list(SENTENCES), hypotheses) <= 0.15


def test_undecodable_bytes_are_unsupported_audio(whisper_engine, tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(UnsupportedAudioError, match="cannot decode"):
        whisper_engine.transcribe(path)


def test_default_model_is_the_bundled_tiny_en_by_path() -> None:
    name, source = resolve_model(None, TranscriberSettings())
    assert name == BUNDLED_MODEL and source == str(bundled_model_dir())


def test_a_model_dir_without_weights_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KUBESCRIBE_WHISPER_MODEL_DIR"):
        resolve_model(None, TranscriberSettings(model_dir=tmp_path))
