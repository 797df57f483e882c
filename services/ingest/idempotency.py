"""``Idempotency-Key`` claims in the ``idempotency`` KV bucket: same key and tenant → same recording.

A claim maps ``sha256(tenant, key)`` to the recording id that took it and when. It is created
before the upload streams and released when the upload fails, so only accepted uploads are
replayed; a claim whose recording has a status is a replay, one without a status is either
still uploading (409) or left by a process that died mid-upload (taken over once stale).
The KV revision makes every step compare-and-set, so two replicas never both win a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.common.status import StatusStore
from services.common.tasks import cancel_and_wait
from services.ingest.errors import ApiError, UnavailableError

IDEMPOTENCY_STALE_S = 30.0
"""A claim not renewed for this long was left by a process that died mid-upload: a retry takes it
over. Short, because the client retrying after an ingest crash waits this long at most."""
CLAIM_RENEW_S = 10.0
"""A live upload renews its claim this often (:meth:`IdempotencyClaims.keep_fresh`), so an upload
that streams for minutes is never taken over."""
CLAIM_ATTEMPTS = 5
"""Races (a claim released or taken over between our reads) are retried this often, then 503."""


def claim_key(tenant: str, key: str) -> str:
    """The KV key of an ``Idempotency-Key``: hashed, because client keys may hold any characters."""
    return hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()


class IdempotencyClaims:
    """Claim, and release, ``Idempotency-Key`` s; the status store says whether an owner finished."""

    def __init__(self, kv: KeyValue, status: StatusStore) -> None:
        self.kv = kv
        self.status = status

    async def claim(self, key: str, recording_id: str) -> tuple[str, int | None]:
        """Claim ``key`` for ``recording_id``; returns (owner id, our revision or None if not ours).

        A won claim also writes ``rec.<id>`` → key, so deleting the recording finds its claim
        without scanning the bucket."""
        owner, revision = await self._claim(key, recording_id)
        if revision is not None:
            try:
                await self.kv.put(_reverse(recording_id), key.encode())
            except Exception as exc:  # without it a deletion could not find the claim: give it back
                await self.release(key, revision)
                raise UnavailableError(f"could not record the Idempotency-Key ({type(exc).__name__}); retry") from exc
        return owner, revision

    async def forget(self, recording_id: str) -> list[str]:
        """Remove the claim of ``recording_id`` (and its reverse entry) for good; returns the keys removed."""
        try:
            entry = await self.kv.get(_reverse(recording_id))
        except KeyNotFoundError:
            return []
        keys = [(entry.value or b"").decode(), _reverse(recording_id)]
        for name in keys:
            with contextlib.suppress(Exception):
                await self.kv.purge(name)
        return keys

    async def _claim(self, key: str, recording_id: str) -> tuple[str, int | None]:
        value = json.dumps({"id": recording_id, "at": time.time()}).encode()
        for _ in range(CLAIM_ATTEMPTS):
            try:
                return recording_id, await self.kv.create(key, value)
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue  # released between our create and get: try again
            claim = json.loads(entry.value or b"{}")
            owner = claim.get("id")
            if owner and await self.status.get(owner) is not None:
                return owner, None
            if time.time() - float(claim.get("at", 0)) < IDEMPOTENCY_STALE_S:
                raise ApiError(
                    409,
                    "in_progress",
                    "an upload with this Idempotency-Key is still in progress; retry when it has finished",
                    id=owner,
                )
            try:  # the owner died mid-upload: take the claim over
                return recording_id, await self.kv.update(key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
        raise UnavailableError("could not claim the Idempotency-Key; retry")

    def keep_fresh(self, key: str, recording_id: str, revision: int) -> ClaimLease:
        """Renew our claim every ``CLAIM_RENEW_S`` until the upload ends (:meth:`ClaimLease.stop`)."""
        return ClaimLease(self.kv, key, recording_id, revision)

    async def release(self, key: str, revision: int) -> None:
        """Drop our claim (only if still ours), so a retry of a failed upload starts fresh."""
        with contextlib.suppress(Exception):
            entry = await self.kv.get(key)
            await self.kv.delete(key, last=revision)
            await self.kv.delete(_reverse(json.loads(entry.value or b"{}")["id"]))


REVERSE_PREFIX = "rec."
"""Keys ``rec.<recording id>`` hold the claim key of that recording, so a deletion can find it."""


def _reverse(recording_id: str) -> str:
    return f"{REVERSE_PREFIX}{recording_id}"


class ClaimLease:
    """A claim kept fresh while its upload streams, so only a dead upload's claim goes stale."""

    def __init__(self, kv: KeyValue, key: str, recording_id: str, revision: int) -> None:
        self.kv, self.key, self.recording_id, self.revision = kv, key, recording_id, revision
        self._task = asyncio.create_task(self._renew(), name=f"renew-claim-{recording_id}")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(CLAIM_RENEW_S)
            value = json.dumps({"id": self.recording_id, "at": time.time()}).encode()
            with contextlib.suppress(Exception):  # NATS away: the next round tries again
                self.revision = await self.kv.update(self.key, value, last=self.revision)

    async def stop(self) -> int:
        """Stop renewing; returns the claim's current revision (what :meth:`IdempotencyClaims.release` needs)."""
        await cancel_and_wait(self._task)
        return self.revision
