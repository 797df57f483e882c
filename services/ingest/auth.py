"""Bearer-key auth for the /v1 routes: per-tenant keys and the legacy shared token.

On when ``KUBESCRIBE_API_KEYS_FILE`` or ``KUBESCRIBE_API_TOKEN`` is set; off otherwise (a
throw-away local run, where every caller is :data:`~services.ingest.keys.ANONYMOUS`).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from services.ingest.keys import ANONYMOUS, KeyRing, Principal


class BearerAuth:
    """A FastAPI dependency resolving ``Authorization: Bearer <key>`` to the calling :class:`Principal`."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return self.keys.enabled

    async def __call__(self, request: Request) -> Principal:
        if not self.keys.enabled:
            return ANONYMOUS
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        principal = self.keys.authenticate(presented.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid API key: send `Authorization: Bearer <key>` "
                "(create one with `kubescribe keys create --tenant NAME`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal
