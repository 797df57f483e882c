"""Handling one ``SummaryReady`` or ``RecordingFailed``: at most one webhook delivery per outcome.

Retries ride on JetStream: a failed attempt is recorded in the recording's status
(``webhook.state = retrying``, attempts, the answer) and the message is nak'ed with the
backoff delay, so a retry survives a restart of the notifier and waits in the stream, not in
memory. A redelivered message whose webhook is already ``delivered``, ``failed`` or ``refused``
is acked without a POST, so each recording's receiver gets one POST per outcome (at-least-once:
a crash between the receiver's 2xx and the status write repeats it with the same ``id``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import httpx
from nats.js import JetStreamContext

from services.common.context import Context, NatsMessage
from services.common.documents import Summary
from services.common.errors import KubescribeError, MissingObjectError
from services.common.events import RecordingFailed, SummaryReady, parse_event, utcnow
from services.common.settings import NotifierSettings, Settings
from services.common.status import RecordingStatus, StatusStore, WebhookDelivery
from services.common.storage import get_bytes
from services.common.topology import SUMMARY_READY
from services.notifier import metrics
from services.notifier.delivery import post
from services.notifier.domain import (
    RETRYABLE_STATUS,
    TERMINAL,
    backoff_s,
    past_deadline,
    payload,
    webhook_type,
)
from services.notifier.urls import RefusedUrlError, parse_networks, resolve_target

logger = logging.getLogger(__name__)

MAX_CRASHES = 20
"""A message whose handling raised (NATS down, a bug) this many times is dropped with a log line:
the consumer retries forever otherwise (``max_deliver=-1``, the retry deadline bounds deliveries)."""
NOTIFIER = "notifier_handler"
"""Context key of the service's :class:`Notifier`, set in the app's lifespan."""


@dataclass(frozen=True)
class Decision:
    """What to do with the message: ack (``retry_in`` None) or nak with that delay."""

    state: str
    retry_in: float | None = None


class Notifier:
    """Turns outcome events into signed POSTs and records each delivery in the status."""

    def __init__(self, js: JetStreamContext, settings: Settings, client: httpx.AsyncClient) -> None:
        self.js = js
        self.settings = settings
        self.config: NotifierSettings = settings.notifier
        self.client = client
        self.allowed = parse_networks(self.config.allowed_networks)
        self._store: StatusStore | None = None

    async def store(self) -> StatusStore:
        if self._store is None:
            self._store = await StatusStore.open(self.js)
        return self._store

    async def handle(self, data: bytes, subject: str) -> Decision:
        model = SummaryReady if subject == SUMMARY_READY else RecordingFailed
        try:
            event = parse_event(model, data)
        except KubescribeError as exc:  # nothing to notify about: the failure is reported by its producer
            logger.warning("ignoring an unreadable %s message: %s", subject, exc)
            return Decision("invalid")
        if event.recording_id is None:
            return Decision("no-recording")
        store = await self.store()
        status = await store.get(event.recording_id)
        if status is None:  # not a recording this deployment knows: nowhere to record a delivery
            return Decision("no-status")
        url = (status.webhook.url if status.webhook else None) or self.config.tenant_urls.get(event.tenant)
        if not url:
            return Decision("no-webhook")
        kind = webhook_type(event)
        current = status.webhook
        if current is not None and current.event == kind and current.state in TERMINAL:
            return Decision("duplicate")
        secret = self.config.tenant_secrets.get(event.tenant) or self.config.secret
        now = utcnow()
        first = current.first_attempt_at if current and current.event == kind and current.first_attempt_at else now
        if not secret:
            return await self._record(event, url, kind, "failed", first, now, error=_NO_SECRET, posted=False)
        try:
            target = await resolve_target(url, self.allowed)
        except RefusedUrlError as exc:
            logger.warning("webhook of %s refused: %s", event.recording_id, exc)
            return await self._record(event, url, kind, "refused", first, now, error=str(exc), posted=False)
        try:
            summary_text = await self._summary_text(event)
        except MissingObjectError as exc:  # expired or purged: the webhook can only say so
            return await self._record(event, url, kind, "failed", first, now, error=str(exc), posted=False)
        body = payload(event, summary_text=summary_text, status_url=self._status_url(event))
        attempt = await post(self.client, target, body, secret=secret, webhook_id=event.id)
        if attempt.delivered:
            return await self._record(event, url, kind, "delivered", first, now, code=attempt.status_code)
        attempts = (current.attempts if current and current.event == kind else 0) + 1
        retryable = attempt.status_code is None or attempt.status_code in RETRYABLE_STATUS
        delay = backoff_s(attempts, self.config.backoff_base_s, self.config.backoff_max_s)
        if not retryable or past_deadline(first, now, delay, self.config.retry_deadline_s):
            return await self._record(
                event, url, kind, "failed", first, now, code=attempt.status_code, error=attempt.error
            )
        await self._record(event, url, kind, "retrying", first, now, code=attempt.status_code, error=attempt.error)
        return Decision("retrying", retry_in=delay)

    async def _summary_text(self, event: SummaryReady | RecordingFailed) -> str | None:
        if not isinstance(event, SummaryReady):
            return None
        return Summary.model_validate_json(await get_bytes(self.js, event.summary)).text

    def _status_url(self, event: SummaryReady | RecordingFailed) -> str | None:
        base = self.settings.ingest.public_url
        return f"{base.rstrip('/')}/v1/recordings/{event.recording_id}" if base else None

    async def _record(
        self,
        event: SummaryReady | RecordingFailed,
        url: str,
        kind: str,
        state: str,
        first: datetime,
        now: datetime,
        *,
        code: int | None = None,
        error: str | None = None,
        posted: bool = True,
    ) -> Decision:
        """Write the delivery's state into the status (CAS; only the ``webhook`` field changes).

        ``posted``: whether a POST was made (refusals and a missing secret count no attempt)."""

        def mutate(status: RecordingStatus) -> RecordingStatus:
            previous = status.webhook
            attempts = previous.attempts if previous and previous.event == kind else 0
            status.webhook = WebhookDelivery(
                url=url,
                state=state,
                event=kind,
                event_id=event.id,
                attempts=attempts + (1 if posted else 0),
                last_status_code=code,
                error=error,
                first_attempt_at=first,
                updated_at=now,
            )
            return status

        assert event.recording_id is not None
        await (await self.store()).update(event.recording_id, mutate)
        logger.info("webhook %s of %s: %s (%s)", kind, event.recording_id, state, code or error or "ok")
        return Decision(state)


_NO_SECRET = "no signing secret: set KUBESCRIBE_NOTIFIER_SECRET (or the tenant's in KUBESCRIBE_NOTIFIER_TENANT_SECRETS)"


async def on_outcome(message: NatsMessage, notifier: Notifier = Context(NOTIFIER)) -> None:
    """Deliver the webhook of one outcome event; ack, or nak with the backoff delay to retry."""
    try:
        decision = await notifier.handle(message.body, message.raw_message.subject)
    except Exception:
        delivered = message.raw_message.metadata.num_delivered
        if delivered >= MAX_CRASHES:
            logger.exception("webhook handling failed %d times; giving up on this message", delivered)
            await message.ack()
            return
        logger.exception("webhook handling failed (delivery %d); retrying in 5 s", delivered)
        await message.nack(delay=5.0)
        return
    metrics.OUTCOMES.labels(decision.state).inc()
    if decision.retry_in is not None:
        await message.nack(delay=decision.retry_in)
    else:
        await message.ack()
