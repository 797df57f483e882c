"""Identifiers: ULIDs, so ids sort by creation time in KV listings and logs."""

from __future__ import annotations

import hashlib
import re

from ulid import ULID

ULID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"
_ULID_RE = re.compile(ULID_PATTERN)


def new_id() -> str:
    """A new sortable unique id (26 characters, Crockford base32)."""
    return str(ULID())


def is_valid_id(value: str) -> bool:
    """True for a well-formed ULID string; used to reject path parameters early."""
    return bool(_ULID_RE.match(value))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def fixed_event_id(kind: str, recording_id: str) -> str:
    """A ULID-shaped event id fixed per (``kind``, recording): the recording's timestamp + 80 bits of a hash.

    Why fixed: an event published again after a crash (its step done, the status write after it
    not) carries the same ``Nats-Msg-Id``, so JetStream's duplicate window drops the second copy
    and consumers see it once. A fresh id per attempt made two SummaryReady for one recording.
    """
    digest = int.from_bytes(hashlib.sha256(f"{kind}/{recording_id}".encode()).digest()[:10], "big")
    tail = "".join(_CROCKFORD[(digest >> (5 * i)) & 31] for i in reversed(range(16)))
    return recording_id[:10] + tail
