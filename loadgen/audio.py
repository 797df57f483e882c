"""Synthetic audio for traces, rendered once and cached by content hash.

A spec (speech text, or a duration of tone or noise) always renders to the same bytes, so the
file is named by the SHA-256 of the spec: a second replay of the same trace, or 32 items that
share a spec, cost one synthesis. Everything is rendered before a replay starts, so synthesis
never delays an arrival. Output is 16 kHz mono 16-bit WAV, what whisper resamples to anyway.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import platformdirs

from loadgen.errors import AudioSynthesisError
from loadgen.trace import AudioSpec, FileAudio, NoiseAudio, SpeechAudio, ToneAudio

SAMPLE_RATE = 16_000
CACHE_VERSION = "1"
"""Bump when rendering changes, so old cache entries are not reused."""


def default_cache_dir() -> Path:
    configured = os.environ.get("KUBESCRIBE_LOADGEN_CACHE_DIR")
    return Path(configured) if configured else Path(platformdirs.user_cache_dir("kubescribe")) / "loadgen-audio"


def spec_hash(spec: AudioSpec) -> str:
    return hashlib.sha256(f"{CACHE_VERSION}:{spec.model_dump_json()}".encode()).hexdigest()


def materialize(spec: AudioSpec, *, cache_dir: Path | None = None, base_dir: Path | None = None) -> Path:
    """The audio file for ``spec``: the file itself for ``file`` specs, else a cached rendering."""
    if isinstance(spec, FileAudio):
        path = Path(spec.path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise AudioSynthesisError(f"audio file {path} does not exist (trace paths are relative to the trace)")
        return path
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{spec_hash(spec)}.wav"
    if target.is_file() and target.stat().st_size > 44:
        return target
    # Render into a temporary name and rename: a concurrent or interrupted run never sees half a file.
    fd, tmp_name = tempfile.mkstemp(prefix=".render-", suffix=".wav", dir=cache)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if isinstance(spec, SpeechAudio):
            _speak(spec, tmp)
        elif isinstance(spec, ToneAudio):
            _write_wav(tmp, _tone(spec))
        elif isinstance(spec, NoiseAudio):
            _write_wav(tmp, _noise(spec))
        else:  # pragma: no cover - the union is closed
            raise AudioSynthesisError(f"unsupported audio spec {spec!r}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def audio_key(spec: AudioSpec) -> str:
    return f"file:{spec.path}" if isinstance(spec, FileAudio) else spec_hash(spec)


SPEECH_TOOLS = ("espeak-ng", "sox")


def missing_speech_tools() -> list[str]:
    """The synthesis tools not on ``PATH`` (empty when speech can be rendered)."""
    return [tool for tool in SPEECH_TOOLS if shutil.which(tool) is None]


def synthesize_speech(
    text: str,
    path: Path,
    *,
    voice: str | None = None,
    speed: int = 160,
    rate: int = SAMPLE_RATE,
    bits: int | None = None,
) -> Path:
    """Speak ``text`` into ``path`` with espeak-ng, converted by sox; the suffix picks the format.

    The one speech synthesizer of the project: traces render with it, and tests speak their
    known sentences with it, so whisper is scored on the audio a replay sends. ``voice`` None is
    espeak-ng's default; ``bits`` None keeps sox's choice for the format (lossy formats have none).
    """
    missing = missing_speech_tools()
    if missing:
        raise AudioSynthesisError(
            f"speech audio needs {' and '.join(missing)}: `apt-get install espeak-ng sox`, "
            "or make the trace with `--audio tone`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".espeak.wav")
    voice_args = ["-v", voice] if voice else []
    bits_args = ["-b", str(bits)] if bits else []
    try:
        subprocess.run(
            ["espeak-ng", *voice_args, "-s", str(speed), "-w", str(raw), "--stdin"],
            input=text.encode(),
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(
            ["sox", str(raw), "-r", str(rate), "-c", "1", *bits_args, str(path)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise AudioSynthesisError(f"{exc.cmd[0]} failed for voice {voice!r}: {reason[-1] if reason else exc}") from exc
    finally:
        raw.unlink(missing_ok=True)
    return path


def _speak(spec: SpeechAudio, path: Path) -> None:
    synthesize_speech(spec.text, path, voice=spec.voice, speed=spec.speed, bits=16)


def _tone(spec: ToneAudio) -> bytes:
    frames = int(spec.duration_s * SAMPLE_RATE)
    step = 2 * math.pi * spec.frequency_hz / SAMPLE_RATE
    amplitude = 0.3 * 32767
    return struct.pack(f"<{frames}h", *(int(amplitude * math.sin(step * i)) for i in range(frames)))


def _noise(spec: NoiseAudio) -> bytes:
    frames = int(spec.duration_s * SAMPLE_RATE)
    return random.Random(spec.seed).randbytes(frames * 2)


def wav_bytes(pcm: bytes, *, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono PCM samples as a WAV file (stdlib ``wave`` writes the header)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm)
    return out.getvalue()


def _write_wav(path: Path, pcm: bytes) -> None:
    path.write_bytes(wav_bytes(pcm))


def wav_duration(path: Path) -> float | None:
    """Duration of a WAV file from its header, or None for other formats."""
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes() / float(handle.getframerate())
    except (wave.Error, EOFError, OSError):
        return None
