"""The dispatcher's logic for AUDIO messages: validate, plan, submit, settle, ack.

The messages arrive through FastStream (the durable pull subscriber in :mod:`services.dispatcher.app`,
manual acks), but a message outlives its handler here: :meth:`Dispatcher.receive` keeps the raw
nats-py message while its recording waits to be packed and while its job runs (for minutes), keeps
it alive with in-progress acks, and acks it from the job watcher once the recording's outcome is
durable in the status KV (transcribed, or failed with a reason). How many messages one replica
holds is bounded by :mod:`.holding` (sized from the backend's capacity), so a backlog stays in the
stream, where other replicas take it and KEDA counts it.

The keepalive and every settlement go through the messaging boundary
(:mod:`services.common.inflight`), the same as the summarizer's: an invalid event or missing audio
(:class:`PermanentError`) is reported and acked, an unexpected error while accepting is nak'ed
with backoff and reported after ``MAX_DELIVER`` deliveries, and a shutdown hands every held
message back at once.

A split recording (its chunks in several jobs) is held until it is merged: a chunk's job ending
settles it only when the recording is transcribed or when it was the last of its chunk jobs.

Idempotency: a redelivered message for a recording that already has an outcome is acked; one
for a recording held by this dispatcher replaces the held message; one whose status names a
job the backend still runs is adopted, never dispatched twice. A job that ends without an
outcome for some recordings (crash, kill -9, eviction) re-plans them with backoff, up to
``max_attempts``, then fails them with the job's reason.

Ownership across replicas: the AUDIO message is the lease, the status KV the fence
(:mod:`.ownership` says why that suffices and where it does not without the fence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.errors import InvalidEventError, MissingObjectError
from services.common.events import AudioReceived, Stage, parse_event, recording_id_of, utcnow
from services.common.inflight import Failure, Keepalive, ack, fail, hand_back, settle
from services.common.logs import OUTAGE_ERRORS
from services.common.messaging import report_failure
from services.common.settings import Settings
from services.common.status import RecordingStage, RecordingStatus, StatusStore
from services.common.storage import object_exists
from services.common.telemetry import StageSpan, record_span, traceparent_of
from services.common.tombstones import status_for_update
from services.common.topology import AUDIO_RECEIVED, DISPATCHER_CONSUMER
from services.dispatcher import metrics
from services.dispatcher.backends.base import JobBackend
from services.dispatcher.domain import TERMINAL_STATES, JobEvent, JobRecording, JobState, TranscriptionJob
from services.dispatcher.holding import Room, hold_limit
from services.dispatcher.jobs_store import JobStore
from services.dispatcher.ownership import OUTCOMES, NotOwnerError, claim
from services.dispatcher.planner import Pending, Planner

logger = logging.getLogger(__name__)

SOURCE = "kubescribe/dispatcher"
MAX_ACK_PENDING = 10_000
"""Ceiling of AUDIO messages unacked across EVERY replica of the durable (JetStream counts per
consumer, not per subscriber). Each replica holds far fewer (:func:`hold_limit`), so this only
stops a misconfigured fleet from pulling the whole stream."""


def consumer_config(
    *, ack_wait_s: float, durable: str = DISPATCHER_CONSUMER, deliver_new: bool = False
) -> ConsumerConfig:
    """The durable AUDIO consumer: explicit acks, redelivery after ``ack_wait_s`` unless kept alive."""
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_ack_pending=MAX_ACK_PENDING,
        filter_subject=AUDIO_RECEIVED,
        deliver_policy=DeliverPolicy.NEW if deliver_new else DeliverPolicy.ALL,
    )


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


OUTAGE_RETRY_S = 0.5
OUTAGE_RETRY_MAX_S = 5.0
"""A job event that met a NATS outage is handled again after 0.5 s, doubling up to 5 s: about
how long a JetStream leader election takes, without hammering a server that is restarting."""


@dataclass
class Held:
    """A recording this dispatcher is responsible for until its outcome is durable."""

    recording: JobRecording
    model: str
    msg: Msg
    created_at: datetime
    attempts: int = 0
    job_id: str | None = None
    chunk_jobs: set[str] = field(default_factory=set)
    """Live jobs running chunks of this (split) recording: it settles when the last one ends."""
    fence: str | None = None
    """The job id the status named when this replica last wrote or read it (see :func:`.ownership.claim`)."""


@dataclass
class LiveJob:
    job: TranscriptionJob
    submitted_at: datetime = field(default_factory=utcnow)
    admitted_at: datetime | None = None
    """Set when the admission was not written on its own: the running write stamps it."""


class Dispatcher:
    """Owns the held messages, one planner and one backend; fed by the AUDIO subscriber."""

    def __init__(
        self,
        js: JetStreamContext,
        backend: JobBackend,
        settings: Settings | None = None,
    ) -> None:
        self.js = js
        self.backend = backend
        self.settings = settings or Settings()
        self.config = self.settings.dispatcher
        self.planner = Planner(self.config)
        self.held: dict[str, Held] = {}
        self.room = Room(hold_limit(self.config, backend), lambda: len(self.held))
        self.jobs: dict[str, LiveJob] = {}
        self._wake = asyncio.Event()
        self._accepting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._status: StatusStore | None = None
        self._jobs_store: JobStore | None = None
        self._keepalive = Keepalive(
            self.config.ack_wait_s, lambda: [*(held.msg for held in self.held.values()), *self.room.waiting]
        )

    # --- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the stores, warm the backend and start watching jobs, planning and heartbeating.

        Called before the subscriber starts, so the first message finds everything in place.
        """
        self._status = await StatusStore.open(self.js)
        self._jobs_store = await JobStore.open(self.js)
        await self.backend.start()  # e.g. warm the local slots before the first recording arrives
        self._tasks = [
            asyncio.create_task(self._watch(), name="dispatcher-watch"),
            asyncio.create_task(self._plan_loop(), name="dispatcher-plan"),
            asyncio.create_task(self._keepalive.run(), name="dispatcher-keepalive"),
        ]

    async def stop(self) -> None:
        """Stop the background tasks and the backend, then hand every held message back.

        Call it once the subscriber has stopped (nothing new arrives) and before the connection
        closes (the naks need it). The backend goes first: a local job still running after its
        messages were handed to another dispatcher would transcribe them twice. Idempotent.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.room.close()  # messages waiting for room go back to JetStream, not into a stopped dispatcher
        await self.backend.aclose()
        for held in list(self.held.values()):
            await hand_back(held.msg)  # to the next dispatcher at once, not after ack_wait
        self.held.clear()
        metrics.PENDING.set(0)

    # --- consuming ---------------------------------------------------------------------------
    async def receive(self, msg: Msg) -> None:
        """Take one message from the subscriber: accept it, never raise, wake the planner.

        One at a time and in delivery order (FastStream runs the messages of one fetch
        concurrently): two deliveries of one recording must not both be planned. A message that
        is not held is settled at once, from what :meth:`accept` returned or raised.
        """
        reserved = recording_id_of(msg.data) not in self.held  # a redelivery of a held one needs no room
        if reserved and not await self.room.reserve(msg):
            await hand_back(msg)  # shutting down: to the next dispatcher at once
            return
        try:
            async with self._accepting:
                try:
                    held = await self.accept(msg)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never crash the consumer: the boundary acks, naks or reports
                    self._forget(msg)
                    await settle(msg, exc, report=self._report_rejected)
                else:
                    if not held:
                        await ack(msg)
        finally:
            if reserved:
                self.room.release()
        self._wake.set()

    def _hold(self, rid: str, held: Held) -> None:
        self.held[rid] = held
        self.room.taken()
        metrics.PENDING.set(len(self.held))

    def _release(self, rid: str) -> Held | None:
        """Stop holding ``rid`` (its message is settled by the caller) and make room for the next."""
        held = self.held.pop(rid, None)
        metrics.PENDING.set(len(self.held))
        self.room.freed()
        return held

    async def accept(self, msg: Msg) -> bool:
        """Validate one AudioReceived and queue it for planning; ``False``: it already has an outcome.

        Raises :class:`InvalidEventError` / :class:`MissingObjectError` for a message that can
        never be dispatched (:meth:`_report_rejected` reports it).
        """
        assert self._status is not None
        event = parse_event(AudioReceived, msg.data)
        rid = event.recording_id
        if rid in self.held:
            self.held[rid].msg = msg  # a redelivery of what we already hold: ack the latest
            return True
        # _queued (or a claim) writes the status next; the audio is looked up in the same round trip.
        (status, deleted), audio_stored = await asyncio.gather(
            status_for_update(self.js, self._status, rid), object_exists(self.js, event.audio)
        )
        if status is not None and status.stage in OUTCOMES:
            return False
        if deleted:  # deleted while queued: its audio is gone, and so is its status
            logger.info("dropping %s: the recording was deleted", rid)
            return False
        if not audio_stored:
            raise MissingObjectError(
                f"audio object {event.audio.bucket}/{event.audio.name} of recording {rid} does not exist: "
                "upload the bytes before publishing kubescribe.audio.received"
            )
        traceparent = traceparent_of(msg.headers) or (status.traceparent if status else None)
        recording = JobRecording(
            recording_id=rid,
            audio=event.audio,
            tenant=event.tenant,
            priority=event.priority,
            duration_s=event.duration_s,
            language=event.language,
            word_timestamps=event.word_timestamps,
            prompt=event.prompt,
            temperature=event.temperature,
            traceparent=traceparent,
            event_id=event.id,
        )
        held = Held(recording, self.planner.model_for(event), msg, event.created_at)
        held.attempts = status.attempts if status else 0
        held.fence = status.job_id if status else None
        self._hold(rid, held)
        metrics.RECORDINGS_ACCEPTED.inc()
        if status is not None and status.job_id and status.job_id in await self.backend.active():
            await self._adopt(held, status.job_id)
            return True
        await self._status.update(rid, lambda s: _queued(s, event, traceparent), create=lambda: _new_status(event))
        if held.attempts >= self.config.max_attempts:
            await self._give_up(held, f"its jobs ended without a transcript {held.attempts} times")
            return True
        self.planner.add(Pending(recording, held.model, time.monotonic(), attempt=held.attempts + 1))
        return True

    def _forget(self, msg: Msg) -> None:
        """Accepting ``msg`` failed half-way: do not hold it, so its redelivery is accepted afresh."""
        rid = recording_id_of(msg.data)
        held = self.held.get(rid) if rid else None
        if held is not None and held.msg is msg and held.job_id is None:
            self._release(rid)

    async def _report_rejected(self, msg: Msg, failure: Failure) -> None:
        """The boundary's failure report for a message that cannot be dispatched (stage ``dispatch``)."""
        try:
            event: AudioReceived | None = parse_event(AudioReceived, msg.data)
        except InvalidEventError:
            event = None
        if not failure.retryable:
            metrics.RECORDINGS_REJECTED.inc()
        await report_failure(
            self.js,
            stage=Stage.dispatch,
            reason=failure.reason,
            retryable=failure.retryable,
            source=SOURCE,
            recording_id=event.recording_id if event else recording_id_of(msg.data),
            attempts=failure.deliveries,
            error=failure.error,
            subject=msg.subject,
            tenant=event.tenant if event else "default",
        )

    async def _adopt(self, held: Held, job_id: str) -> None:
        """The recording is in a job the backend still runs (another replica's, or ours before a
        restart): wait for it. Tracked first, then checked again: a job that ended in between
        was reported before we listened, so it is settled here (the status decides how)."""
        assert self._jobs_store is not None
        rid = held.recording.recording_id
        held.job_id = job_id
        if job_id not in self.jobs:
            job = await self._jobs_store.get(job_id)
            if job is not None:
                self.jobs[job_id] = LiveJob(job)
        if job_id in self.jobs and job_id in await self.backend.active():
            logger.info("adopted recording %s in live job %s", rid, job_id)
            return
        if not self._owns(rid, job_id):
            return  # its end was reported meanwhile, and settled
        live = self.jobs.get(job_id)
        if live is None or not any(
            self._owns(r.recording_id, job_id) for r in live.job.recordings if r.recording_id != rid
        ):
            self.jobs.pop(job_id, None)
        await self._settle(rid, JobEvent(job_id=job_id, state=JobState.failed, reason="ended while being adopted"))

    # --- planning and submitting -------------------------------------------------------------
    async def _plan_loop(self) -> None:
        while True:
            now = time.monotonic()
            for job in self.planner.plan(now, self.backend.free_slots()):
                try:
                    await self._dispatch(job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a failed submit re-plans its recordings later
                    # NATS restarting or electing a leader: one warning line (OneLineNatsErrors).
                    logger.exception("could not submit job %s; re-planning", job.job_id)
                    for recording in job.recordings:
                        await self._retry_or_fail(recording.recording_id, f"job submit failed: {exc}")
            deadline = self.planner.next_deadline(time.monotonic())
            timeout = None if deadline is None else max(0.01, deadline - time.monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _dispatch(self, job: TranscriptionJob) -> None:
        """Claim each recording for ``job`` (the fence, :func:`_claim`), then store the spec and submit
        what was claimed; a recording another replica dispatched meanwhile is dropped, unsettled."""
        assert self._status is not None and self._jobs_store is not None
        now = utcnow()
        claimed = []
        for recording in job.recordings:
            rid = recording.recording_id
            held = self.held[rid]
            first = recording.chunk is None or recording.chunk.first
            attempts = held.attempts + 1 if first else held.attempts  # a split recording: one attempt
            try:
                await self._status.update(rid, lambda s, h=held, a=attempts: claim(s, h.fence, job.job_id, a))
            except NotOwnerError as exc:
                logger.warning("recording %s is another dispatcher's now (%s): dropped", rid, exc)
                self._release(rid)  # unsettled: whoever holds its message now finishes it
                continue
            claimed.append(recording)
            held.job_id = held.fence = job.job_id
            if recording.chunk is not None:
                held.chunk_jobs.add(job.job_id)
            if not first:
                continue  # a split recording is one attempt, queued once: counted at its first chunk
            held.attempts += 1
            metrics.QUEUE_WAIT.observe(max(0.0, (now - held.created_at).total_seconds()))
            record_span(
                StageSpan.QUEUE_WAIT,
                start_ns=_ns(held.created_at),
                end_ns=_ns(now),
                parent=recording.traceparent,
                attributes={
                    "kubescribe.recording_id": recording.recording_id,
                    "kubescribe.job_id": job.job_id,
                    "kubescribe.tenant": recording.tenant,
                    "kubescribe.priority": recording.priority.value,
                },
            )
        if not claimed:
            return
        if len(claimed) < len(job.recordings):
            job = job.model_copy(update={"recordings": claimed})
        await self._jobs_store.put(job)
        self.jobs[job.job_id] = LiveJob(job, submitted_at=now)
        metrics.JOBS_SUBMITTED.labels(self.backend.kind).inc()
        metrics.JOB_RECORDINGS.observe(len(job.recordings))
        logger.info("submitting job %s: %d recordings, %.1f s audio", job.job_id, len(job.recordings), job.audio_s)
        await self.backend.submit(job)

    # --- job states --------------------------------------------------------------------------
    async def _watch(self) -> None:
        async for event in self.backend.watch():
            await self._handle(event)

    async def _handle(self, event: JobEvent) -> None:
        """Handle one job event, through a NATS outage if need be: a job's end is never dropped.

        A dropped terminal event would leave its recordings held (and kept alive) with no job
        running for them, for good. :meth:`on_job_event` is idempotent, so retrying it after a
        timeout halfway through is safe; later events wait, in order, behind this one.
        """
        delay = OUTAGE_RETRY_S
        while True:
            try:
                await self.on_job_event(event)
                return
            except asyncio.CancelledError:
                raise
            except OUTAGE_ERRORS:
                # One line with the error's name (OneLineNatsErrors), no traceback.
                logger.warning(
                    "could not handle %s of job %s; retrying in %.1f s", event.state, event.job_id, delay, exc_info=True
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, OUTAGE_RETRY_MAX_S)
            except Exception:
                logger.exception("could not handle %s of job %s", event.state, event.job_id)
                return

    async def on_job_event(self, event: JobEvent) -> None:
        assert self._status is not None and self._jobs_store is not None
        live = self.jobs.get(event.job_id)
        if live is None:
            return
        if not self.backend.superseded(event.job_id):  # only the last state is kept: a queued one overwrites it
            await self._jobs_store.put_state(event)
        mine = [r for r in live.job.recordings if self._owns(r.recording_id, event.job_id)]
        if event.state is JobState.admitted and self.backend.waiting(event.job_id, JobState.running):
            live.admitted_at = event.at  # already running: one status write for both stages
        elif event.state in (JobState.admitted, JobState.running):
            stages = [(RecordingStage.admitted, live.admitted_at)] if live.admitted_at else []
            reached = RecordingStage.admitted if event.state is JobState.admitted else RecordingStage.running
            stages.append((reached, None))
            for recording in mine:
                await self._status.update(recording.recording_id, lambda s, st=stages: _reached(s, st))
            if event.state is JobState.running:
                metrics.ADMISSION_WAIT.observe(max(0.0, (event.at - live.submitted_at).total_seconds()))
                for recording in mine:
                    record_span(
                        StageSpan.ADMISSION_WAIT,
                        start_ns=_ns(live.submitted_at),
                        end_ns=_ns(event.at),
                        parent=recording.traceparent,
                        attributes={
                            "kubescribe.recording_id": recording.recording_id,
                            "kubescribe.job_id": event.job_id,
                            "kubescribe.backend": self.backend.kind,
                            "kubescribe.profile": live.job.profile,
                        },
                    )
        if event.state in TERMINAL_STATES:
            for recording in mine:
                await self._settle(recording.recording_id, event)
            # Forgotten only once every recording is settled: a retry after an outage finds it.
            self.jobs.pop(event.job_id, None)
            metrics.JOBS_FINISHED.labels(self.backend.kind, event.state.value).inc()
            self._wake.set()

    def _owns(self, rid: str, job_id: str) -> bool:
        held = self.held.get(rid)
        return held is not None and (held.job_id == job_id or job_id in held.chunk_jobs)

    async def _settle(self, rid: str, event: JobEvent) -> None:
        assert self._status is not None
        status = await self._status.get(rid)  # first: a timeout here leaves nothing half-changed
        self.held[rid].chunk_jobs.discard(event.job_id)
        if status is not None and status.stage in OUTCOMES:
            held = self._release(rid)
            assert held is not None
            await ack(held.msg)
            return
        if self.held[rid].chunk_jobs:
            return  # a split recording is done when merged: its other chunks' jobs are still running
        reason = f"job {event.job_id} ended {event.state.value}" + (f" ({event.reason})" if event.reason else "")
        if event.state is JobState.evicted:
            self.held[rid].attempts -= 1  # preemption is not the recording's fault
        await self._retry_or_fail(rid, reason)

    async def _retry_or_fail(self, rid: str, reason: str) -> None:
        held = self.held.get(rid)
        if held is None:
            return
        held.job_id = None
        if held.attempts >= self.config.max_attempts:
            await self._give_up(held, reason)
            return
        metrics.RECORDINGS_RETRIED.inc()
        delay = self.config.retry_backoff_s * 2 ** max(0, held.attempts - 1)
        logger.warning("recording %s has no outcome (%s); retrying in %.1f s", rid, reason, delay)
        now = time.monotonic()
        self.planner.add(Pending(held.recording, held.model, now, attempt=held.attempts + 1, not_before=now + delay))
        self._wake.set()

    async def _give_up(self, held: Held, reason: str) -> None:
        """Report and ack; unheld first, so if the report fails (nak) the redelivery starts afresh."""
        rid = held.recording.recording_id
        self._release(rid)

        async def report(msg: Msg, failure: Failure) -> None:
            await report_failure(
                self.js,
                stage=Stage.transcribe,
                reason=failure.reason,
                retryable=failure.retryable,
                source=SOURCE,
                recording_id=rid,
                attempts=held.attempts,
                subject=msg.subject,
                tenant=held.recording.tenant,
            )

        reason = f"recording {rid} not transcribed after {held.attempts} attempts: {reason}"
        await fail(held.msg, Failure(None, True, held.attempts, reason), report)


def _reached(status: RecordingStatus, stages: list[tuple[RecordingStage, datetime | None]]) -> RecordingStatus:
    """``status`` having reached each of ``stages`` (at its time, or now), in order."""
    for stage, at in stages:
        status.advance(stage, at)
    return status


def _new_status(event: AudioReceived) -> RecordingStatus:
    return RecordingStatus(recording_id=event.recording_id, tenant=event.tenant, priority=event.priority)


def _queued(status: RecordingStatus, event: AudioReceived, traceparent: str | None) -> RecordingStatus:
    status.tenant, status.priority = event.tenant, event.priority
    status.audio = status.audio or event.audio
    status.filename = status.filename or event.filename
    status.duration_s = status.duration_s if status.duration_s is not None else event.duration_s
    status.traceparent = status.traceparent or traceparent
    return status.advance(RecordingStage.queued)
