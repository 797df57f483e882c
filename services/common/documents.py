"""Documents stored in Object Stores (transcripts, summaries): payloads that events point to."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.common.events import utcnow


class Word(BaseModel):
    """One timed word, present only when the upload asked for word timestamps."""

    model_config = ConfigDict(extra="forbid")

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    probability: float | None = None


class Segment(BaseModel):
    """One timed stretch of speech."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0, description="Seconds from the start of the recording.")
    end: float = Field(ge=0)
    text: str
    words: list[Word] | None = Field(
        None,
        description="Per-word timing, when the upload asked for it.",
        exclude_if=lambda words: words is None,  # absent, not null: segments without it look as before
    )


class Transcript(BaseModel):
    """What the transcriber writes to the ``transcripts`` store, one per recording."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    text: str
    segments: list[Segment]
    language: str | None = None
    model: str
    audio_s: float
    processing_s: float
    job_id: str
    created_at: datetime = Field(default_factory=utcnow)


class ActionItem(BaseModel):
    """Something a speaker said someone will do; owner and due date only when the speaker said them."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="What is to be done.", examples=["Send the revised budget"])
    owner: str | None = Field(None, description="Who will do it, as named in the recording.", examples=["Maria"])
    due: str | None = Field(None, description="When, in the speaker's words.", examples=["Friday"])


class SummaryContent(BaseModel):
    """The structured part of a summary: what the LLM is asked to produce, as JSON."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="One line naming what the recording is about.")
    key_points: list[str] = Field(default_factory=list, max_length=5, description="At most five key points.")
    decisions: list[str] = Field(default_factory=list, description="Decisions taken.")
    action_items: list[ActionItem] = Field(default_factory=list)


class Summary(BaseModel):
    """What the summarizer writes to the ``summaries`` store, one per recording.

    ``text`` is always there (older documents have nothing else); the structured fields are
    optional additions, filled when the model answered with valid JSON.
    """

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    text: str
    model: str
    ttft_s: float
    generation_s: float
    tokens_in: int
    tokens_out: int
    requests: int = Field(1, description="Gateway requests made: >1 for a map-reduce summary.")
    title: str | None = Field(None, description="One line naming what the recording is about.")
    key_points: list[str] | None = Field(None, max_length=5, description="At most five key points.")
    decisions: list[str] | None = None
    action_items: list[ActionItem] | None = None
    created_at: datetime = Field(default_factory=utcnow)
