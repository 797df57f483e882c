"""One signed POST to a checked, pinned address.

The connection goes to the address :func:`resolve_target` checked (the URL's host replaced by
it), with the original name in ``Host`` and, for https, as the TLS server name (SNI and
certificate check), so DNS rebinding between check and connect cannot move it. Redirects are
not followed: a redirect could lead anywhere the guard never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from services.notifier.signature import HEADER, sign
from services.notifier.urls import Target

USER_AGENT = "kubescribe-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """How one POST went: ``status_code`` when the receiver answered, ``error`` when it did not."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def post(client: httpx.AsyncClient, target: Target, body: bytes, *, secret: str, webhook_id: str) -> Attempt:
    """POST ``body`` signed with ``secret``; network errors become an :class:`Attempt` with the reason."""
    netloc_host = target.host if ":" not in target.host else f"[{target.host}]"
    default_port = 443 if target.url.startswith("https:") else 80
    headers = {
        "Host": netloc_host if target.port == default_port else f"{netloc_host}:{target.port}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Kubescribe-Webhook-Id": webhook_id,
        HEADER: sign(body, secret),
    }
    try:
        response = await client.post(
            target.pinned_url,
            content=body,
            headers=headers,
            extensions={"sni_hostname": target.host},
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Attempt(error=f"{type(exc).__name__}: {exc}"[:500])
    return Attempt(status_code=response.status_code, error=None if response.is_success else response.text[:200])
