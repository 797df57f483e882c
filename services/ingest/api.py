"""The ingest ASGI app: wires the routers, the error handlers, the metrics middleware and the lifespan.

Each piece lives in its own module (routes, errors, middleware, service, idempotency); this
one only puts them together, so a test or ``services.ingest.app`` can build as many apps as
it needs, each with its own settings, NATS connection and metrics registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from nats.aio.client import Client as NatsClient

from services.common.settings import Settings
from services.ingest.auth import BearerAuth
from services.ingest.availability import NatsGate, add_nats_error_handler
from services.ingest.errors import add_error_handlers
from services.ingest.keys import KeyRing
from services.ingest.middleware import MetricsMiddleware
from services.ingest.openai_api import router as openai_router
from services.ingest.routes import probes, router
from services.ingest.service import IngestService


def create_app(settings: Settings | None = None, *, nc: NatsClient | None = None) -> FastAPI:
    """The ASGI app. With ``nc`` it uses that connection (and leaves it open); without, its
    lifespan connects with ``settings.nats`` and ensures the topology."""
    settings = settings or Settings()
    service = IngestService(settings, nc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(
        title="kubescribe ingest",
        version="1",
        description="Upload recordings; read their status, transcripts and summaries.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.auth = BearerAuth(KeyRing(settings.api.api_keys_file, settings.api.api_token))
    app.add_middleware(NatsGate)  # inside the metrics middleware: its 503s are counted
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    add_error_handlers(app)
    add_nats_error_handler(app)
    app.include_router(router)
    app.include_router(openai_router)
    app.include_router(probes)
    return app
