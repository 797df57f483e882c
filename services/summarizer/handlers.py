"""Handling one ``TranscriptReady``: transcript in, summary stored, ``SummaryReady`` out.

At-least-once delivery makes every step idempotent:

- a recording whose status is already ``summarized`` is acked without a gateway call;
- the summary reference is written to the status *before* ``SummaryReady`` is published and
  the stage moves to ``summarized`` only after, so a crash in between republishes the stored
  summary on redelivery instead of asking the LLM again;
- every failure is a ``RecordingFailed`` (stage ``summarize``) with a reason; gateway overload
  past the retry deadline is reported ``retryable``. The message is then acked: nothing is
  lost, and nothing loops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from faststream import Context
from faststream.nats.annotations import NatsMessage
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from services.common.documents import Summary, Transcript
from services.common.errors import KubescribeError, PermanentError, TemporaryError
from services.common.events import RecordingFailed, Stage, SummaryReady, TranscriptReady, parse_event, recording_id_of
from services.common.messaging import publish_event, report_failure
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import get_bytes, put_bytes
from services.common.telemetry import StageSpan, extract_context, record_span, tracer
from services.common.topology import SUMMARIES_BUCKET
from services.summarizer import metrics
from services.summarizer.client import ChatClient, LlmUnavailableError
from services.summarizer.domain import SummaryOutcome
from services.summarizer.inflight import InFlight
from services.summarizer.prompts import PromptBuilder
from services.summarizer.structured import structured_fields, summarize_structured

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/summarizer"
NO_SPEECH = "No speech was detected in this recording."
INFLIGHT = "summarizer_inflight"
"""Context key of the service's :class:`InFlight`, set in the app's lifespan."""


@dataclass
class Outcome:
    """What happened to one message; the consumer acks in every case."""

    kind: str  # summarized | duplicate | republished | invalid | failed
    recording_id: str | None = None
    failure: RecordingFailed | None = None


class SummarizeHandler:
    """Thin glue between JetStream, the status KV, the Object Stores and :func:`summarize_transcript`."""

    def __init__(self, js: JetStreamContext, client: ChatClient, builder: PromptBuilder) -> None:
        self.js = js
        self.client = client
        self.builder = builder
        self._store: StatusStore | None = None

    async def store(self) -> StatusStore:
        if self._store is None:
            self._store = await StatusStore.open(self.js)
        return self._store

    async def handle(self, data: bytes, headers: Mapping[str, str] | None, subject: str | None = None) -> Outcome:
        picked_ns = time.time_ns()
        try:
            event = parse_event(TranscriptReady, data)
        except PermanentError as exc:
            failure = await report_failure(
                self.js,
                stage=Stage.summarize,
                reason=str(exc),
                retryable=False,
                source=SOURCE,
                recording_id=recording_id_of(data),
                error=exc,
                subject=subject,
            )
            metrics.OUTCOMES.labels("invalid").inc()
            return Outcome("invalid", failure.recording_id, failure)

        store = await self.store()
        status = await store.get(event.recording_id)
        if status is not None and status.stage is RecordingStage.summarized:
            logger.debug("recording %s already summarized: ack without a gateway call", event.recording_id)
            metrics.OUTCOMES.labels("duplicate").inc()
            return Outcome("duplicate", event.recording_id)

        traceparent = (headers or {}).get("traceparent") or (status.traceparent if status else None)
        parent = extract_context({"traceparent": traceparent} if traceparent else None)
        attributes = {
            "kubescribe.recording_id": event.recording_id,
            "kubescribe.tenant": event.tenant,
            "kubescribe.priority": event.priority.value,
        }
        queue_start = int(event.created_at.timestamp() * 1e9)
        record_span(
            StageSpan.SUMMARIZATION_QUEUE, start_ns=queue_start, end_ns=picked_ns, parent=parent, attributes=attributes
        )
        metrics.QUEUE.observe(max(0.0, (picked_ns - queue_start) / 1e9))

        def to_summarizing(current: RecordingStatus) -> RecordingStatus:
            current.traceparent = current.traceparent or traceparent
            current.transcript = current.transcript or event.transcript
            return current.advance(RecordingStage.summarizing)

        status = await store.update(
            event.recording_id,
            to_summarizing,
            create=lambda: RecordingStatus(
                recording_id=event.recording_id, tenant=event.tenant, priority=event.priority, traceparent=traceparent
            ),
        )

        token = otel_context.attach(parent)
        try:
            with tracer(__name__).start_as_current_span("summarize", attributes=attributes):
                if status.summary is not None:  # stored, but SummaryReady may not have gone out
                    summary = Summary.model_validate_json(await get_bytes(self.js, status.summary))
                    await self._announce(event, summary, status.summary)
                    metrics.OUTCOMES.labels("republished").inc()
                    return Outcome("republished", event.recording_id)
                try:
                    summary = await self._summarize(event, attributes, parent)
                except KubescribeError as exc:
                    failure = await report_failure(
                        self.js,
                        stage=Stage.summarize,
                        reason=f"summarizing {event.recording_id} failed: {exc}",
                        retryable=isinstance(exc, TemporaryError),
                        source=SOURCE,
                        recording_id=event.recording_id,
                        attempts=getattr(exc, "attempts", 1),
                        error=exc,
                        subject=subject,
                        job_id=event.job_id,
                        tenant=event.tenant,
                    )
                    metrics.OUTCOMES.labels("failed").inc()
                    trace.get_current_span().set_status(trace.StatusCode.ERROR, str(exc)[:200])
                    return Outcome("failed", event.recording_id, failure)
                ref = await put_bytes(self.js, SUMMARIES_BUCKET, event.recording_id, summary.model_dump_json().encode())
                await store.advance(
                    event.recording_id,
                    RecordingStage.summarizing,
                    summary=ref,
                    metrics={
                        "ttft_s": summary.ttft_s,
                        "generation_s": summary.generation_s,
                        "tokens_in": float(summary.tokens_in),
                        "tokens_out": float(summary.tokens_out),
                        "llm_requests": float(summary.requests),
                    },
                )
                await self._announce(event, summary, ref)
        finally:
            otel_context.detach(token)

        stored_ns = time.time_ns()
        final = await store.get(event.recording_id)
        received = final.timestamps.get(RecordingStage.received.value) if final else None
        total_start = int(received.timestamp() * 1e9) if received else queue_start
        record_span(StageSpan.TOTAL, start_ns=total_start, end_ns=stored_ns, parent=parent, attributes=attributes)
        metrics.OUTCOMES.labels("summarized").inc()
        return Outcome("summarized", event.recording_id)

    async def _summarize(self, event: TranscriptReady, attributes: dict, parent: otel_context.Context) -> Summary:
        try:
            transcript = Transcript.model_validate_json(await get_bytes(self.js, event.transcript))
        except ValidationError as exc:
            raise PermanentError(
                f"transcript {event.transcript.bucket}/{event.transcript.name} is not a Transcript document: "
                f"{exc.errors()[0]['msg']}"
            ) from exc
        if not transcript.text.strip() and not any(s.text.strip() for s in transcript.segments):
            return Summary(
                recording_id=event.recording_id,
                text=NO_SPEECH,
                model=self.client.settings.model,
                ttft_s=0.0,
                generation_s=0.0,
                tokens_in=0,
                tokens_out=0,
                requests=0,
            )
        metrics.IN_FLIGHT.inc()
        try:
            structured = await summarize_structured(self.client, self.builder, transcript, priority=event.priority)
            outcome = structured.outcome
        except ValueError as exc:  # a context too small for the prompts: a configuration problem
            raise PermanentError(str(exc)) from exc
        except LlmUnavailableError:
            metrics.REQUESTS.inc()
            raise
        finally:
            metrics.IN_FLIGHT.dec()
        self._observe(outcome, attributes, parent)
        return Summary(
            recording_id=event.recording_id,
            text=outcome.text,
            model=outcome.model,
            ttft_s=outcome.ttft_s,
            generation_s=outcome.generation_s,
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            requests=outcome.requests,
            **structured_fields(structured.content),
        )

    @staticmethod
    def _observe(outcome: SummaryOutcome, attributes: dict, parent: otel_context.Context) -> None:
        span_attributes = {
            **attributes,
            "kubescribe.model": outcome.model,
            "kubescribe.tokens_in": outcome.tokens_in,
            "kubescribe.tokens_out": outcome.tokens_out,
        }
        record_span(
            StageSpan.TTFT,
            start_ns=outcome.started_ns,
            end_ns=outcome.first_token_ns,
            parent=parent,
            attributes=span_attributes,
        )
        record_span(
            StageSpan.GENERATION,
            start_ns=outcome.first_token_ns,
            end_ns=outcome.first_token_ns + int(outcome.generation_s * 1e9),
            parent=parent,
            attributes=span_attributes,
        )
        metrics.TTFT.observe(outcome.ttft_s)
        metrics.GENERATION.observe(outcome.generation_s)
        metrics.TOKENS.labels("in").inc(outcome.tokens_in)
        metrics.TOKENS.labels("out").inc(outcome.tokens_out)
        metrics.REQUESTS.inc(outcome.attempts)

    async def _announce(self, event: TranscriptReady, summary: Summary, ref) -> None:
        """Publish ``SummaryReady`` (with the current trace context), then mark the recording summarized."""
        await publish_event(
            self.js,
            SummaryReady(
                source=SOURCE,
                recording_id=event.recording_id,
                tenant=event.tenant,
                priority=event.priority,
                summary=ref,
                model=summary.model,
                ttft_s=summary.ttft_s,
                generation_s=summary.generation_s,
                tokens_in=summary.tokens_in,
                tokens_out=summary.tokens_out,
            ),
        )
        store = await self.store()
        await store.advance(event.recording_id, RecordingStage.summarized, summary=ref)


def _pass_invalid(value: Any, validate: ValidatorFunctionWrapHandler) -> Any:
    try:
        return validate(value)
    except ValidationError:
        return value


IncomingTranscriptReady = Annotated[TranscriptReady, WrapValidator(_pass_invalid)]
"""Documented as ``TranscriptReady``, but an invalid payload still reaches the subscriber, whose
:class:`SummarizeHandler` reports it as a ``RecordingFailed`` and acks it: FastStream's own
validation error would leave it unacked, redelivered until ``max_deliver`` and then dropped."""


async def on_transcript_ready(
    event: IncomingTranscriptReady,
    message: NatsMessage,
    inflight: InFlight = Context(INFLIGHT),
) -> None:
    """Summarize one transcript (``TranscriptReady`` in, ``SummaryReady`` or ``RecordingFailed`` out).

    Returns once a slot is free for the next message, so the pull subscriber never fetches
    more than the service can start; the summary itself runs in the background under
    :class:`InFlight`, which settles the message.
    """
    await inflight.admit(message)
