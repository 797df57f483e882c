"""The trace format: what to send, and when, as JSON Lines (one :class:`TraceItem` per line).

A trace is the input of ``kubescribe loadgen replay`` (audio items) and ``kubescribe loadgen llm``
(prompt items). Each line names its arrival offset from the start of the run, so a replay is
open-loop and repeatable: the same trace sends the same requests at the same times, whatever
the system under test does. The audio is a file, or a synthetic spec rendered (and cached) before
the run starts, so synthesis never delays an arrival.

Example lines::

    {"id": "k000", "offset_s": 0.0, "audio": {"kind": "speech", "text": "Hello team."}, "model": "medium"}
    {"id": "k001", "offset_s": 0.0, "audio": {"kind": "tone", "duration_s": 30}, "tenant": "acme"}
    {"id": "p000", "offset_s": 0.0, "prompt": "Summarize: ...", "max_tokens": 128}

The JSON Schema of a line is ``schemas/kubescribe.loadgen.trace.json`` (:func:`schema_files`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadgen.errors import TraceError
from services.common.events import TENANT_PATTERN, Priority

TRACE_SCHEMA_FILE = "kubescribe.loadgen.trace.json"


class SpeechAudio(BaseModel):
    """Speech synthesized by espeak-ng: real words, so whisper produces a real transcript."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["speech"] = "speech"
    text: str = Field(min_length=1, max_length=100_000, description="What the voice says.")
    voice: str = Field("en", description="espeak-ng voice.", examples=["en", "en-us"])
    speed: int = Field(160, ge=80, le=450, description="espeak-ng words per minute.")


class ToneAudio(BaseModel):
    """A sine tone of a given length: cheap to make, exercises duration-based packing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tone"] = "tone"
    duration_s: float = Field(gt=0, le=4 * 3600, description="Length in seconds.")
    frequency_hz: float = Field(440.0, gt=0, le=8000)


class NoiseAudio(BaseModel):
    """Seeded white noise of a given length (the worst case for voice activity detection)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["noise"] = "noise"
    duration_s: float = Field(gt=0, le=4 * 3600, description="Length in seconds.")
    seed: int = Field(0, description="Same seed, same bytes (and the same cache entry).")


class FileAudio(BaseModel):
    """An existing audio file; a relative path is relative to the trace file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, description="Path of the audio file.")


AudioSpec = Annotated[SpeechAudio | ToneAudio | NoiseAudio | FileAudio, Field(discriminator="kind")]


class TraceItem(BaseModel):
    """One arrival: a recording to submit (``audio``) or a prompt to send (``prompt``)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "title": "kubescribe load-generator trace item",
            "description": "One line of a kubescribe load trace (JSON Lines): an arrival at offset_s.",
        },
    )

    id: str = Field(
        min_length=1,
        max_length=128,
        description="Unique within the trace; names the item in results.",
        examples=["k000"],
    )
    offset_s: float = Field(ge=0, description="Arrival time, seconds after the start of the run.", examples=[0.25])
    audio: AudioSpec | None = Field(None, description="The recording to submit (replay traces).")
    prompt: str | None = Field(None, min_length=1, description="The user prompt (LLM-only traces).")
    max_tokens: int | None = Field(None, ge=1, description="Completion budget of a prompt item.")
    tenant: str = Field("default", pattern=TENANT_PATTERN, description="Tenant the recording belongs to.")
    priority: Priority = Field(Priority.normal, description="Scheduling priority.")
    model: str | None = Field(
        None, max_length=256, description="Whisper model (audio) or LLM model (prompt); default: the system's."
    )
    language: str | None = Field(None, max_length=16, description="Spoken language hint.")

    @model_validator(mode="after")
    def _one_payload(self) -> TraceItem:
        if (self.audio is None) == (self.prompt is None):
            raise ValueError("exactly one of `audio` (a recording) or `prompt` (an LLM request) must be set")
        return self


def parse_trace_lines(lines: Iterable[str], *, source: str = "<trace>") -> list[TraceItem]:
    """Validate every line; the error names the line, and duplicate ids are refused."""
    items: list[TraceItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = TraceItem.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<line>'}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise TraceError(f"{source}:{number}: invalid trace item: {problems}") from exc
        if item.id in seen:
            raise TraceError(f"{source}:{number}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
    return items


def read_trace(path: Path) -> list[TraceItem]:
    """Items of a trace file, in file order (replay sorts by offset itself)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from exc
    items = parse_trace_lines(text.splitlines(), source=str(path))
    if not items:
        raise TraceError(f"{path}: the trace has no items; make one with `kubescribe loadgen make`")
    return items


def dump_trace(items: Iterable[TraceItem]) -> str:
    return "".join(item.model_dump_json(exclude_none=True, exclude_defaults=False) + "\n" for item in items)


def write_trace(path: Path, items: Iterable[TraceItem]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_trace(items))
    return path


def schema_files() -> dict[str, dict]:
    """The JSON Schema of one trace line, for ``kubescribe schemas export``."""
    schema = TraceItem.model_json_schema()
    schema["$id"] = f"https://kubescribe.dev/schemas/{TRACE_SCHEMA_FILE}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return {TRACE_SCHEMA_FILE: schema}


def example_line() -> str:
    """A valid line, used by docs and error hints."""
    return json.dumps({"id": "k000", "offset_s": 0.0, "audio": {"kind": "tone", "duration_s": 5}})
