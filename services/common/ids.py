"""Identifiers: ULIDs, so ids sort by creation time in KV listings and logs."""

from __future__ import annotations

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
