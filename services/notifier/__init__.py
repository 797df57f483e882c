"""Signed completion webhooks: a separate consumer of SUMMARIES and FAILED (see docs/webhooks.md).

Receivers verify a delivery with :func:`verify_signature`.
"""

from services.notifier.signature import HEADER, SignatureError, sign, verify_signature

__all__ = ["HEADER", "SignatureError", "sign", "verify_signature"]
