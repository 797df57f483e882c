"""Real test speech: clips of known text synthesized with espeak-ng, converted with sox.

Whisper hears these like a (robotic) human voice, so transcripts can be scored with WER
against the text that was spoken.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = (
    "The quarterly budget review is scheduled for Thursday morning.",
    "Please send the updated design document to the whole team before Friday.",
    "We agreed to hire two more engineers for the platform group.",
    "The customer reported that the mobile application crashes on startup.",
    "Our next meeting will focus on the migration to the new database.",
    "Remember to water the plants in the office kitchen.",
)


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run `apt-get install espeak-ng sox` (.ci/run does)")


def synthesize(text: str, path: Path, *, rate: int = 16000, speed: int = 160) -> Path:
    """Speak ``text`` into ``path``; the suffix picks the format (.wav, .flac, .ogg, .mp3 via sox)."""
    require_tools("espeak-ng", "sox")
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


def duration_of(path: Path) -> float:
    """Duration in seconds, measured by sox (independent of the code under test)."""
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())
