"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError

from services.common.errors import ConfigurationError
from services.common.settings import NatsSettings

logger = logging.getLogger(__name__)


async def _log_error(exc: Exception) -> None:
    """One line instead of nats-py's default traceback per failed (re)connect attempt."""
    logger.debug("nats: %s: %s", type(exc).__name__, exc)


async def connect(settings: NatsSettings | None = None, *, name: str = "kubescribe") -> NatsClient:
    """Connect with reconnects forever; a server that is not there at all is a clear error."""
    settings = settings or NatsSettings()
    options = settings.connect_options()
    # nats-py retries the *initial* connect forever when max_reconnect_attempts is -1, so a missing
    # server would look like a hang: try for about ``connect_timeout`` seconds, then fail with a
    # readable error. Once connected, reconnect forever (a NATS restart must not kill a service).
    options["max_reconnect_attempts"] = max(1, round(settings.connect_timeout / options["reconnect_time_wait"]))
    try:
        client = await asyncio.wait_for(
            nats.connect(name=name, error_cb=_log_error, **options),
            timeout=settings.connect_timeout * 3,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ConfigurationError(
            f"cannot reach NATS at {settings.url}: {detail}; start one with `kubescribe up` or set KUBESCRIBE_NATS_URL"
        ) from exc
    client.options["max_reconnect_attempts"] = -1
    return client
