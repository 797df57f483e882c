"""The ingest OpenAPI document, generated from the app (served at /openapi.json, kept in schemas/)."""

from __future__ import annotations

from services.common.settings import Settings
from services.ingest.api import create_app


def openapi_document() -> dict:
    """Build the app without connecting anywhere (the lifespan, which connects, does not run)."""
    return create_app(Settings()).openapi()


def schema_files() -> dict[str, dict]:
    return {"kubescribe.ingest.openapi.json": openapi_document()}
