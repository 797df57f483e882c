"""Retention: recordings older than their tenant's maximum age are deleted, as by ``DELETE``.

Why a sweeper and not JetStream TTLs: the streams' and buckets' ``max_age`` is one number per
stream, while retention is per tenant, and an expiring object must also take its status,
idempotency claim and the other stages' documents with it and announce
``kubescribe.recording.deleted.v1``. So ingest looks every ``retention_sweep_s`` at the status
KV's keys: a recording id is a ULID, whose first characters are its creation time, so only
keys older than the shortest retention are read at all. The streams' own ``max_age``
(``KUBESCRIBE_STREAM_MAX_AGE_S``) stays the upper bound for everything.

Several ingest replicas may sweep at once; deletion is idempotent, so the worst case is a
redundant purge.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js import JetStreamContext
from nats.js.errors import NoKeysError
from ulid import ULID

from services.common.ids import is_valid_id
from services.common.settings import IngestSettings
from services.common.status import StatusStore
from services.common.tasks import cancel_and_wait
from services.ingest.deletion import delete_recording
from services.ingest.idempotency import IdempotencyClaims

logger = logging.getLogger(__name__)


class RetentionSweeper:
    """Deletes expired recordings; :meth:`sweep` once, or :meth:`start` a loop."""

    def __init__(
        self, js: JetStreamContext, status: StatusStore, claims: IdempotencyClaims, settings: IngestSettings
    ) -> None:
        self.js, self.status, self.claims, self.settings = js, status, claims, settings
        self._task: asyncio.Task | None = None

    def max_age(self, tenant: str) -> float:
        """Seconds a recording of ``tenant`` is kept; 0 keeps it (until the streams' max_age)."""
        return float(self.settings.tenant_retention_s.get(tenant, self.settings.retention_s))

    def _ages(self) -> list[float]:
        return [age for age in (self.settings.retention_s, *self.settings.tenant_retention_s.values()) if age > 0]

    @property
    def enabled(self) -> bool:
        return bool(self._ages())

    async def sweep(self, now: float | None = None) -> list[str]:
        """Delete every expired recording; returns their ids."""
        if not self.enabled:
            return []
        now = time.time() if now is None else now
        shortest = min(
            age for age in (self.settings.retention_s, *self.settings.tenant_retention_s.values()) if age > 0
        )
        try:
            keys = await self.status.kv.keys()
        except NoKeysError:
            return []
        expired = []
        for key in keys:
            if not is_valid_id(key) or (age := now - ULID.from_str(key).timestamp) < shortest:
                continue
            status = await self.status.get(key)
            tenant = status.tenant if status is not None else "default"
            limit = self.max_age(tenant)
            if limit > 0 and age > limit:
                await delete_recording(self.js, self.status, self.claims, key, tenant=tenant, reason="retention")
                expired.append(key)
        if expired:
            logger.info("retention: deleted %d expired recordings", len(expired))
        return expired

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._loop(), name="ingest-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # NATS down or a race with a writer: the next sweep tries again
                logger.warning(
                    "retention sweep failed; retrying in %.0f s", self.settings.retention_sweep_s, exc_info=True
                )
            await asyncio.sleep(self.settings.retention_sweep_s)
