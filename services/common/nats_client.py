"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError, NoServersError
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

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


async def last_message(
    js: JetStreamContext, stream: str, subject: str, *, confirm_absence: bool = True
) -> RawStreamMsg:
    """The last message on ``subject``, read with a direct get (``allow_direct`` streams only: the
    Object Stores, and the KV buckets ``topology.DIRECT_KV_BUCKETS`` marks).

    A direct get is answered by the stream's message store without the JetStream API: no JSON
    and base64 on either side, and no API advisory published by the server. Any replica may answer
    it, so on an R3 stream a follower that has not applied a write yet can say "not found" for
    something that exists: with ``confirm_absence`` (for reads where absence is an error or starts
    something) a not-found is asked again of the leader's ``STREAM.MSG.GET`` before it is believed.
    A stale *older* answer is possible too, which is why only reads that a compare-and-set or an
    idempotent stage guards use this. A stream created before it allowed direct gets (no
    responders) is read through the leader.
    """
    try:
        return await js.get_last_msg(stream, subject, direct=True)
    except NoRespondersError:
        return await js.get_last_msg(stream, subject)
    except NotFoundError:
        if not confirm_absence:
            raise
        return await js.get_last_msg(stream, subject)  # NotFoundError again: it really is not there


async def kv_value(js: JetStreamContext, bucket: str, key: str, *, confirm_absence: bool = True) -> RawStreamMsg | None:
    """A KV key's live entry in one :func:`last_message` (its ``seq`` is the key's revision), or
    None when the key is absent, deleted or purged, as nats-py's ``KeyValue.get`` would report
    it. ``js.key_value(...).get`` would cost a STREAM.INFO first, on a read every stage makes."""
    try:
        msg = await last_message(js, f"KV_{bucket}", f"$KV.{bucket}.{key}", confirm_absence=confirm_absence)
    except NotFoundError:  # no such key, or no bucket yet
        return None
    if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
        return None
    return msg
