"""The summarizer's core: one ``TranscriptReady`` in, the summary stored, ``SummaryReady`` out.

:class:`Summarizer` does the work and raises to fail; the messaging boundary
(:class:`services.common.inflight.InFlight`) settles every message from the exception's class
and calls :meth:`Summarizer.report` for the ones it gives up on:

- an invalid event, an unreadable transcript or a request the gateway rejects
  (:class:`PermanentError`): a ``RecordingFailed`` (stage ``summarize``, not retryable), ack;
- gateway overload past the client's retry deadline, or a dropped stream
  (:class:`TemporaryError`): nak with the error's ``delay``; after ``max_deliver`` deliveries a
  retryable ``RecordingFailed`` and ack. Nothing is lost, and nothing loops.

At-least-once delivery makes every step idempotent:

- a recording whose status is already ``summarized`` is acked without a gateway call;
- the summary is stored under the recording's id *before* ``SummaryReady`` is published, and
  the stage moves to ``summarized`` (with the summary's reference) only after: a redelivery
  that finds the stage already ``summarizing`` (an earlier attempt began) looks for that
  stored summary and republishes it instead of asking the LLM again. Looking costs a read on
  redelivery only; the status write that used to record the reference in between cost every
  recording a compare-and-set, its ack and a watch delivery to every ingest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from pydantic import ValidationError

from services.common.documents import Summary, Transcript
from services.common.errors import InvalidEventError, PermanentError
from services.common.events import ObjectRef, Stage, SummaryReady, TranscriptReady, parse_event, recording_id_of
from services.common.ids import fixed_event_id
from services.common.inflight import Failure
from services.common.messaging import publish_event, report_failure
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import get_bytes, get_stored, put_bytes
from services.common.telemetry import StageSpan, extract_context, record_span, tracer
from services.common.tombstones import is_deleted, status_for_update
from services.common.topology import SUMMARIES_BUCKET
from services.summarizer import metrics
from services.summarizer.client import ChatClient, LlmUnavailableError
from services.summarizer.domain import SummaryOutcome
from services.summarizer.prompts import PromptBuilder
from services.summarizer.structured import structured_fields, summarize_structured

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/summarizer"
NO_SPEECH = "No speech was detected in this recording."


@dataclass
class Outcome:
    """What happened to one message that was handled (and is then acked)."""

    kind: str  # summarized | duplicate | republished | deleted
    recording_id: str | None = None


class Summarizer:
    """Glue between JetStream, the status KV, the Object Stores and :func:`summarize_structured`."""

    def __init__(self, js: JetStreamContext, client: ChatClient, builder: PromptBuilder) -> None:
        self.js = js
        self.client = client
        self.builder = builder
        self._store: StatusStore | None = None

    async def store(self) -> StatusStore:
        if self._store is None:
            self._store = await StatusStore.open(self.js)
        return self._store

    async def handle(self, msg: Msg) -> Outcome:
        """Summarize the transcript ``msg`` announces; raise to fail (the boundary settles ``msg``)."""
        picked_ns = time.time_ns()
        headers = msg.headers
        event = parse_event(TranscriptReady, msg.data)  # InvalidEventError: reported by report()

        store = await self.store()
        status, deleted = await status_for_update(self.js, store, event.recording_id)  # to_summarizing writes it next
        began_before = status is not None and status.stage is RecordingStage.summarizing
        if status is not None and status.stage is RecordingStage.summarized:
            logger.debug("recording %s already summarized: ack without a gateway call", event.recording_id)
            metrics.OUTCOMES.labels("duplicate").inc()
            return Outcome("duplicate", event.recording_id)
        if deleted:
            return Outcome("deleted", event.recording_id)

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
                stored = await self._stored_summary(event.recording_id, status) if began_before else None
                if stored is not None:  # stored, but SummaryReady may not have gone out
                    ref, data = stored
                    await self._announce(event, Summary.model_validate_json(data), ref)
                    metrics.OUTCOMES.labels("republished").inc()
                    return Outcome("republished", event.recording_id)
                summary = await self._summarize(event, attributes, parent)  # the span records a failure
                if await is_deleted(self.js, event.recording_id):  # deleted while summarizing: write nothing
                    return Outcome("deleted", event.recording_id)
                ref = await put_bytes(self.js, SUMMARIES_BUCKET, event.recording_id, summary.model_dump_json().encode())
                await self._announce(event, summary, ref)
        finally:
            otel_context.detach(token)

        stored_ns = time.time_ns()
        received = status.timestamps.get(RecordingStage.received.value)  # set once, by the ingest
        total_start = int(received.timestamp() * 1e9) if received else queue_start
        record_span(StageSpan.TOTAL, start_ns=total_start, end_ns=stored_ns, parent=parent, attributes=attributes)
        metrics.OUTCOMES.labels("summarized").inc()
        return Outcome("summarized", event.recording_id)

    async def report(self, msg: Msg, failure: Failure) -> None:
        """Publish the ``RecordingFailed`` (stage ``summarize``) of a message the boundary gave up on."""
        try:
            event: TranscriptReady | None = parse_event(TranscriptReady, msg.data)
        except InvalidEventError:
            event = None
        if event is None:
            await report_failure(
                self.js,
                stage=Stage.summarize,
                reason=failure.reason,
                retryable=failure.retryable,
                source=SOURCE,
                recording_id=recording_id_of(msg.data),
                attempts=failure.deliveries,
                error=failure.error,
                subject=msg.subject,
            )
            metrics.OUTCOMES.labels("invalid").inc()
            return
        await report_failure(
            self.js,
            stage=Stage.summarize,
            reason=f"summarizing {event.recording_id} failed: {failure.reason}",
            retryable=failure.retryable,
            source=SOURCE,
            recording_id=event.recording_id,
            attempts=failure.deliveries if failure.retryable else getattr(failure.error, "attempts", 1),
            error=failure.error,
            subject=msg.subject,
            job_id=event.job_id,
            tenant=event.tenant,
        )
        metrics.OUTCOMES.labels("failed").inc()

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

    async def _stored_summary(self, recording_id: str, status: RecordingStatus) -> tuple[ObjectRef, bytes] | None:
        """What an earlier attempt stored: by the status's reference (written so before this
        version), else under the recording's id; ``None`` when it did not get that far."""
        if status.summary is not None:
            return status.summary, await get_bytes(self.js, status.summary)
        return await get_stored(self.js, SUMMARIES_BUCKET, recording_id)

    async def _announce(self, event: TranscriptReady, summary: Summary, ref: ObjectRef) -> None:
        """Publish ``SummaryReady`` (with the current trace context), then mark the recording
        summarized, with the summary's reference and what its completion cost."""
        await publish_event(
            self.js,
            SummaryReady(
                id=fixed_event_id("summary.ready", event.recording_id),
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
        await store.advance(
            event.recording_id,
            RecordingStage.summarized,
            summary=ref,
            metrics={
                "ttft_s": summary.ttft_s,
                "generation_s": summary.generation_s,
                "tokens_in": float(summary.tokens_in),
                "tokens_out": float(summary.tokens_out),
                "llm_requests": float(summary.requests),
            },
        )
