"""Bearer-token auth for the /v1 routes: on when ``KUBESCRIBE_API_TOKEN`` is set, off otherwise."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


class BearerAuth:
    """A FastAPI dependency comparing ``Authorization: Bearer <token>`` in constant time."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    async def __call__(self, request: Request) -> None:
        if self._token is None:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        # compare_digest on bytes of any length: the time does not depend on where they differ.
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token: send `Authorization: Bearer <KUBESCRIBE_API_TOKEN>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
