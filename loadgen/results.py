"""Results files: one JSON Lines file per run, written by ``replay`` and ``llm``, read by ``report``.

Line 1 is a :class:`RunHeader`; then one :class:`ItemResult` (replay) or :class:`LlmResult`
(LLM benchmark) per request; the last line is a :class:`RunFooter`. Every line has a ``record``
field naming its kind, so the file can be streamed, grepped and appended to. Times relative to
the run are ``*_s`` offsets from the header's ``started_at`` (monotonic clock); the recordings'
own stage ``timestamps`` are copied verbatim from the ``recordings`` KV, so the report can
compute job times exactly as the system recorded them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from loadgen.errors import TraceError
from services.common.events import utcnow

Outcome = Literal["summarized", "transcribed", "failed", "rejected", "timeout", "accepted"]
"""``rejected``: the target refused the submission; ``timeout``: no terminal state by the deadline;
``accepted``: taken by the target, outcome not collected (``--no-collect``)."""


class RunHeader(BaseModel):
    model_config = ConfigDict(extra="ignore")

    record: Literal["run"] = "run"
    run_id: str
    name: str = Field(description="Label shown in reports, e.g. 'kueue-on'.")
    mode: Literal["replay", "llm"]
    target: str = Field(description="What was driven: an ingest URL, a NATS URL or an LLM base URL.")
    trace: str | None = None
    items: int
    started_at: datetime = Field(default_factory=utcnow)
    options: dict[str, Any] = Field(default_factory=dict)


class ItemResult(BaseModel):
    """What happened to one trace item of a replay."""

    model_config = ConfigDict(extra="ignore")

    record: Literal["item"] = "item"
    id: str
    recording_id: str | None = None
    tenant: str = "default"
    priority: str = "normal"
    model: str | None = None
    audio_s: float | None = None
    scheduled_s: float = Field(description="Arrival offset from the trace.")
    sent_s: float | None = Field(None, description="When the submission actually started.")
    lag_s: float | None = Field(None, description="sent_s - scheduled_s: how late the open-loop sender was.")
    accepted_s: float | None = Field(None, description="When the target acknowledged the submission.")
    completed_s: float | None = Field(None, description="When the load generator saw the terminal state.")
    outcome: Outcome = "timeout"
    error: str | None = None
    error_stage: str | None = None
    job_id: str | None = None
    timestamps: dict[str, datetime] = Field(default_factory=dict, description="Stage → time, from the recordings KV.")
    metrics: dict[str, float] = Field(default_factory=dict)


class LlmResult(BaseModel):
    """One request of the LLM-only benchmark."""

    model_config = ConfigDict(extra="ignore")

    record: Literal["llm"] = "llm"
    id: str
    concurrency: int
    start_s: float
    ttft_s: float | None = None
    itl_s: float | None = Field(None, description="Mean inter-token latency of this request.")
    latency_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int = 0
    status: int | None = None
    error: str | None = None
    endpoint: str | None = Field(None, description="Base URL that served it (several replicas: client routing).")


class RunFooter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    record: Literal["end"] = "end"
    ended_at: datetime = Field(default_factory=utcnow)
    duration_s: float
    stopped: Literal["completed", "deadline", "interrupted"] = "completed"


Line = Annotated[RunHeader | ItemResult | LlmResult | RunFooter, Field(discriminator="record")]
_LINE = TypeAdapter(Line)


@dataclass
class Run:
    header: RunHeader
    items: list[ItemResult] = field(default_factory=list)
    llm: list[LlmResult] = field(default_factory=list)
    footer: RunFooter | None = None

    @property
    def name(self) -> str:
        return self.header.name

    def lines(self) -> Iterable[BaseModel]:
        yield self.header
        yield from self.items
        yield from self.llm
        if self.footer:
            yield self.footer


def write_run(path: Path, run: Run) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.model_dump_json() + "\n" for line in run.lines()))
    return path


def read_run(path: Path) -> Run:
    """Parse a results file; the error names the file and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"cannot read results {path}: {exc.strerror or exc}") from exc
    run: Run | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = _LINE.validate_json(raw)
        except ValidationError as exc:
            raise TraceError(f"{path}:{number}: not a loadgen results line: {exc.errors()[0]['msg']}") from exc
        if isinstance(line, RunHeader):
            run = Run(header=line)
        elif run is None:
            raise TraceError(f"{path}:{number}: results must start with a 'run' header line")
        elif isinstance(line, ItemResult):
            run.items.append(line)
        elif isinstance(line, LlmResult):
            run.llm.append(line)
        else:
            run.footer = line
    if run is None:
        raise TraceError(f"{path}: empty results file; produce one with `kubescribe loadgen replay` or `llm`")
    return run
