"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError

from services.common.errors import ConfigurationError
from services.common.settings import NatsSettings


async def connect(settings: NatsSettings | None = None, *, name: str = "kubescribe") -> NatsClient:
    """Connect with reconnects forever; a server that is not there at all is a clear error."""
    settings = settings or NatsSettings()
    try:
        return await nats.connect(name=name, **settings.connect_options())
    except (NoServersError, OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"cannot reach NATS at {settings.url}: {exc}; start one with `kubescribe up` or set KUBESCRIBE_NATS_URL"
        ) from exc
