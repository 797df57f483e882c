"""The webhook signature: ``Kubescribe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

Stripe's scheme: the MAC covers ``f"{t}.{body}"``, so a captured request cannot be replayed
after the tolerance window (the timestamp is signed) nor with another body. Receivers call
:func:`verify_signature` (or the snippet in docs/webhooks.md) on the *raw* body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Kubescribe-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
"""Five minutes, like Stripe's: clocks may drift, a replay later than this is refused."""


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or does not match the body."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value for ``body``, signed now (or at ``timestamp``)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},{SCHEME}={_mac(secret, timestamp, body)}"


def verify_signature(
    body: bytes, header: str | None, secret: str, *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> int:
    """Check ``header`` against the raw ``body``; returns the signed timestamp, raises :class:`SignatureError`.

    Several ``v1=`` entries are accepted (any may match), so a sender can sign with an old and a
    new secret while the key rotates.
    """
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {HEADER} header {header!r}: expected t=<unix>,{SCHEME}=<hex>")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp {timestamp} is more than {tolerance_s:.0f}s from now")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match the body (wrong secret, or the body was altered)")
    return timestamp
