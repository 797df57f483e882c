"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError

from services.common.errors import ConfigurationError
from services.common.settings import NatsSettings

logger = logging.getLogger(__name__)


async def log_connection_error(exc: Exception) -> None:
    """One line instead of nats-py's default traceback per failed (re)connect attempt."""
    logger.debug("nats: %s: %s", type(exc).__name__, exc)


def initial_connect_attempts(settings: NatsSettings) -> int:
    """Connect attempts worth about ``connect_timeout`` seconds.

    nats-py retries the *initial* connect forever when max_reconnect_attempts is -1, so a missing
    server would look like a hang; callers connect with this bound, then set the client's
    ``max_reconnect_attempts`` to -1 (a NATS restart must not kill a service).
    """
    return max(1, round(settings.connect_timeout / settings.connect_options()["reconnect_time_wait"]))


def redacted(url: str) -> str:
    """``url`` (or a comma-separated list of them) without ``user:password@``: the only form logged."""

    def one(part: str) -> str:
        parts = urlsplit(part.strip())
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else part

    return ",".join(one(part) for part in url.split(","))


def unreachable(settings: NatsSettings, exc: BaseException) -> ConfigurationError:
    """The one error every process reports when NATS is not there (or refuses our credentials)."""
    detail = str(exc) or type(exc).__name__
    return ConfigurationError(
        f"cannot reach NATS at {redacted(settings.url)}: {detail}; start one with `kubescribe up` or set "
        "KUBESCRIBE_NATS_URL (the embedded server also needs KUBESCRIBE_NATS_USER and KUBESCRIBE_NATS_PASSWORD "
        "from <data dir>/secrets/nats.json)"
    )


async def connect(settings: NatsSettings | None = None, *, name: str = "kubescribe") -> NatsClient:
    """Connect with reconnects forever; a server that is not there at all is a clear error."""
    settings = settings or NatsSettings()
    options = settings.connect_options()
    options["max_reconnect_attempts"] = initial_connect_attempts(settings)
    try:
        client = await asyncio.wait_for(
            nats.connect(name=name, error_cb=log_connection_error, **options),
            timeout=settings.connect_timeout * 3,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        raise unreachable(settings, exc) from exc
    client.options["max_reconnect_attempts"] = -1
    return client
