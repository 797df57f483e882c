"""OpenTelemetry set-up shared by every process, and trace-context helpers for NATS headers.

One trace per recording, from ingest to summary: services propagate W3C ``traceparent`` in
NATS headers (FastStream's ``NatsTelemetryMiddleware`` does it for broker traffic, and
:func:`inject_headers` / :func:`extract_context` do it for raw nats-py publishes and for the
transcriber subprocess or pod). Spans go to OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
otherwise to a JSONL file that ``kubescribe trace`` reads.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from services import __version__
from services.common.settings import RuntimeSettings, TelemetrySettings

_configured: TracerProvider | None = None
_lock = threading.Lock()


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans to a JSONL file, one object per line.

    Several processes (ingest, dispatcher, transcribers, summarizer) append to the same file;
    each span is one ``write`` of one line on an ``O_APPEND`` descriptor, so lines never interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(span), separators=(",", ":")) + "\n" for span in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict:
    """The fields ``kubescribe trace`` and the tests need, in a stable flat shape."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "service": span.resource.attributes.get("service.name"),
        "status": span.status.status_code.name,
        "attributes": {k: _jsonable(v) for k, v in (span.attributes or {}).items()},
    }


def _jsonable(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def default_span_file() -> Path:
    configured = TelemetrySettings().span_file
    return configured or RuntimeSettings().data_dir / "spans.jsonl"


def setup_telemetry(service_name: str, *, span_file: Path | None = None) -> TracerProvider:
    """Install the global tracer provider once per process and return it."""
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        resource = Resource.create(
            {
                "service.name": service_name,
                "service.namespace": "kubescribe",
                "service.version": __version__,
                "service.instance.id": f"{os.uname().nodename}-{os.getpid()}",
            }
        )
        provider = TracerProvider(resource=resource)
        if TelemetrySettings().enabled:
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter: SpanExporter = OTLPSpanExporter()
            else:
                exporter = JsonlSpanExporter(span_file or default_span_file())
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
        trace.set_tracer_provider(provider)
        _configured = provider
        return provider


def shutdown_telemetry() -> None:
    """Flush spans; call before a process exits (the transcriber does, it is short-lived)."""
    if _configured is not None:
        _configured.force_flush()
        _configured.shutdown()


@functools.cache
def tracer(name: str = "kubescribe") -> trace.Tracer:
    """One tracer per name for the process's life.

    ``trace.get_tracer`` is not a lookup: each call re-registers a warnings filter and builds
    two scope objects before it finds the cached tracer, ~4 % of the ingest's event loop per
    upload under the control-plane bench. Caching is safe before :func:`setup_telemetry` too:
    a tracer got then is OpenTelemetry's proxy, which follows the provider once it is set.
    """
    return trace.get_tracer(name, __version__)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Current trace context as NATS headers (``traceparent``, ``tracestate``)."""
    headers = dict(headers or {})
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by a message's headers (or an empty one)."""
    return propagate.extract(dict(headers or {}))


def traceparent_of(headers: Mapping[str, str] | None) -> str | None:
    return dict(headers or {}).get("traceparent")


class StageSpan:
    """Names of the per-stage spans every recording's trace shows (the paper's latency breakdown).

    Keep ``kubescribe.*`` attribute names in :data:`ATTRIBUTES` too: one registry, like the
    OpenTelemetry demo's telemetry schema.
    """

    INGEST = "ingest"
    QUEUE_WAIT = "queue_wait"  # AudioReceived published → dispatched into a job
    ADMISSION_WAIT = "admission_wait"  # job created → running (Kueue admission, or a free local slot)
    MODEL_LOAD = "model_load"  # the job was handed to a process → its model is ready
    JOB_WAIT = "job_wait"  # in a packed job: model ready → this recording's turn (only when it had to wait)
    TRANSCRIPTION = "transcription"  # a split recording has one per chunk (kubescribe.chunk_index)
    MERGE = "merge"  # a split recording's last chunk stitches the chunks (not a stage of ALL: it sits inside one)
    SUMMARIZATION_QUEUE = "summarization_queue"  # TranscriptReady → summarizer picks it up
    TTFT = "ttft"  # request sent → first token
    GENERATION = "generation"  # first token → last token
    TOTAL = "total"  # recording received → summary stored

    ALL = (
        INGEST,
        QUEUE_WAIT,
        ADMISSION_WAIT,
        MODEL_LOAD,
        JOB_WAIT,
        TRANSCRIPTION,
        SUMMARIZATION_QUEUE,
        TTFT,
        GENERATION,
        TOTAL,
    )
    """Every stage, in pipeline order; they tile ``total`` (the first recording of a job has no ``job_wait``)."""
    OPTIONAL = (JOB_WAIT,)
    REQUIRED = (
        INGEST,
        QUEUE_WAIT,
        ADMISSION_WAIT,
        MODEL_LOAD,
        TRANSCRIPTION,
        SUMMARIZATION_QUEUE,
        TTFT,
        GENERATION,
        TOTAL,
    )
    """The stages every recording's trace shows."""


ATTRIBUTES = {
    "kubescribe.recording_id": "ULID of the recording the span belongs to",
    "kubescribe.job_id": "Transcription job id",
    "kubescribe.tenant": "Tenant of the recording",
    "kubescribe.priority": "low | normal | high",
    "kubescribe.model": "Whisper or LLM model name",
    "kubescribe.profile": "Resource profile / DAS slice of the job",
    "kubescribe.audio_s": "Seconds of audio",
    "kubescribe.tokens_in": "Prompt tokens",
    "kubescribe.tokens_out": "Completion tokens",
    "kubescribe.backend": "local | kubernetes",
    "kubescribe.cpu_s": "CPU seconds the transcriber process spent transcribing (wall time minus waiting for a core)",
    "kubescribe.chunk_index": "Position of the chunk of a split recording, from 0",
    "kubescribe.chunk_count": "Chunks the recording was split into",
    "kubescribe.chunk_start_s": "Start of the chunk's audio window (after snapping), seconds",
    "kubescribe.chunk_end_s": "End of the chunk's audio window (after snapping), seconds",
}
"""Registry of our own span attribute names."""


def record_span(
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    parent: otel_context.Context | str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> None:
    """Emit a finished span with explicit times, for waits measured after the fact (queue, admission).

    ``parent`` is a context or a W3C ``traceparent`` string (as stored in job specs and the
    recordings KV), so a span can join the recording's trace from any process.
    """
    if isinstance(parent, str):
        parent = extract_context({"traceparent": parent})
    span = tracer().start_span(name, context=parent, start_time=start_ns, attributes=dict(attributes or {}))
    span.end(end_time=max(end_ns, start_ns))


def current_traceparent() -> str | None:
    """The active span's ``traceparent``, to store where headers cannot go (KV, job specs)."""
    return inject_headers().get("traceparent")
