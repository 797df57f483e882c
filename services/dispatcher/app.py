"""The dispatcher service: ``serve()`` runs the AUDIO consumer with the configured job backend."""

from __future__ import annotations

import asyncio
import logging

from services.common.nats_client import connect
from services.common.settings import Settings
from services.common.telemetry import setup_telemetry
from services.common.topology import ensure_topology
from services.dispatcher.backends import get_backend
from services.dispatcher.consumer import Dispatcher
from services.dispatcher.domain import JobBackend

logger = logging.getLogger(__name__)


async def serve(
    settings: Settings | None = None,
    *,
    ready: asyncio.Event | None = None,
    backend: JobBackend | None = None,
    durable: str | None = None,
    deliver_new: bool = False,
) -> None:
    """Run until cancelled. ``backend`` (closed on exit either way) overrides
    ``KUBESCRIBE_BACKEND``; ``durable``/``deliver_new`` let tests use a consumer of their own."""
    settings = settings or Settings()
    setup_telemetry("kubescribe-dispatcher")
    nc = await connect(settings.nats, name="kubescribe-dispatcher")
    try:
        js = nc.jetstream()
        await ensure_topology(js, settings.streams)
        backend = backend or get_backend(settings.dispatcher.backend, settings=settings)
        options = {"durable": durable} if durable else {}
        dispatcher = Dispatcher(js, backend, settings, deliver_new=deliver_new, **options)
        logger.info("dispatcher consuming %s with the %s backend", dispatcher.durable, backend.kind)
        await dispatcher.run(ready)
    finally:
        if backend is not None:
            await backend.aclose()
        await nc.drain()
