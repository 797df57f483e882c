"""Real test speech: clips of known text synthesized with espeak-ng, converted with sox.

Synthesis is the product's (:func:`loadgen.audio.synthesize_speech`); this module adds the known
sentences, a skip when the tools are missing, and an independent duration measurement.

Whisper hears these like a (robotic) human voice, so transcripts can be scored with WER
against the text that was spoken.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from loadgen.audio import SPEECH_TOOLS, synthesize_speech

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
    """Speak ``text`` into ``path`` with the product's synthesizer; the suffix picks the format."""
    require_tools(*SPEECH_TOOLS)
    return synthesize_speech(text, path, rate=rate, speed=speed)


def duration_of(path: Path) -> float:
    """Duration in seconds, measured by sox (independent of the code under test)."""
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())
