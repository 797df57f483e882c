"""Recordings in flight per tenant, for the per-tenant limit (429 with ``Retry-After``).

In flight means uploaded and not yet summarized or failed. The count comes from a watch on
the ``recordings`` status KV, which every stage writes, so it is the same for every ingest
replica and survives an ingest restart (the watch starts with the current value of every
key). Uploads this process is still streaming are counted too, so a burst of concurrent
uploads cannot all slip under the limit before their statuses appear; across replicas the
limit can be overshot by at most the uploads in progress at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict

from nats.js.kv import KeyValue

from services.common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

DONE_STAGES = frozenset({"summarized", "failed"})
WATCH_RETRY_S = 1.0


class InFlight:
    """Per-tenant sets of unfinished recording ids, kept current by a KV watch."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, set[str]] = defaultdict(set)
        self._tenant_of: dict[str, str] = {}
        self._uploading: dict[str, int] = defaultdict(int)
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    async def start(self, kv: KeyValue) -> None:
        watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(kv, watcher), name="ingest-inflight-watch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 10)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def count(self, tenant: str) -> int:
        return len(self._by_tenant.get(tenant, ())) + self._uploading.get(tenant, 0)

    @contextlib.contextmanager
    def uploading(self, tenant: str):
        """Count an upload of ``tenant`` while its body streams (before its status exists)."""
        self._uploading[tenant] += 1
        try:
            yield
        finally:
            self._uploading[tenant] -= 1

    def _forget(self, recording_id: str) -> None:
        tenant = self._tenant_of.pop(recording_id, None)
        if tenant is not None:
            self._by_tenant[tenant].discard(recording_id)

    def apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        """One KV update: a put of an unfinished status adds the id, anything else removes it."""
        self._forget(key)
        if operation in ("DEL", "PURGE") or not value:
            return
        try:
            status = json.loads(value)
        except ValueError:
            return
        if status.get("stage") not in DONE_STAGES:
            tenant = str(status.get("tenant", "default"))
            self._tenant_of[key] = tenant
            self._by_tenant[tenant].add(key)

    async def _follow(self, kv: KeyValue, watcher) -> None:
        """Apply every update; when the watch breaks (NATS away, a leader election), watch again.

        A new watch starts with the current value of every key, so the sets are rebuilt from it
        rather than patched: nothing missed while the watch was down stays counted."""
        while True:
            try:
                async for entry in watcher:
                    if entry is None:  # the end of the initial values
                        self.ready.set()
                        continue
                    self.apply(entry.key, entry.value, entry.operation)
                return
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await watcher.stop()
                raise
            except Exception:  # NATS away: one line (OneLineNatsErrors); a bug keeps its traceback
                logger.warning(
                    "the in-flight watch on the status KV broke; watching again in %.0f s", WATCH_RETRY_S, exc_info=True
                )
                with contextlib.suppress(Exception):
                    await watcher.stop()
            watcher = await self._watch_again(kv)

    async def _watch_again(self, kv: KeyValue):
        while True:
            await asyncio.sleep(WATCH_RETRY_S)
            try:
                watcher = await kv.watchall()
            except Exception as exc:
                logger.warning("cannot watch the status KV yet (%s: %s)", type(exc).__name__, exc)
                continue
            self._by_tenant.clear()
            self._tenant_of.clear()
            return watcher
