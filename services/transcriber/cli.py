"""``kubescribe transcribe FILE``: a one-off local transcription, no NATS needed.

Examples::

    kubescribe transcribe meeting.wav
    kubescribe transcribe meeting.flac --model /models/whisper-small-ct2 --json
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def transcribe(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Audio files to transcribe."),
    model: str | None = typer.Option(None, "--model", "-m", help="faster-whisper name or CTranslate2 directory."),
    language: str | None = typer.Option(None, "--language", "-l", help="Spoken language (ISO 639-1)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file (text, segments, timings)."),
) -> None:
    """Transcribe FILES with the same engine the transcription jobs use."""
    from services.common.errors import UnsupportedAudioError
    from services.transcriber.engine import Engine

    engine = Engine()
    failed = 0
    for path in files:
        try:
            result = engine.transcribe(path, model=model, language=language)
        except UnsupportedAudioError as exc:
            typer.echo(f"{path}: {exc}", err=True)
            failed += 1
            continue
        if as_json:
            payload = {
                "file": str(path),
                "text": result.text,
                "language": result.language,
                "audio_s": result.audio_s,
                "processing_s": result.processing_s,
                "segments": [s.model_dump() for s in result.segments],
            }
            typer.echo(json.dumps(payload))
        else:
            typer.echo(f"{path}: {result.text}")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("transcribe")(transcribe)
