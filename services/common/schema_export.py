"""Generating ``schemas/`` from the models: the single source of the event contracts.

Other generators (the AsyncAPI document of the services, the ingest OpenAPI document, the
load-generator trace format) register here, so ``kubescribe schemas export`` writes them all
and the staleness test covers them all.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

from services.common.documents import Summary, SummaryContent, Transcript
from services.common.events import EVENT_TYPES

SchemaGenerator = Callable[[], dict[str, dict]]
"""Returns ``{file name: JSON document}``."""

EXTRA_GENERATORS: tuple[str, ...] = (
    "services.ingest.openapi:schema_files",
    "services.asyncapi:schema_files",
    "loadgen.trace:schema_files",
)
"""``module:function`` of the other generators, imported lazily."""


def event_schema_files() -> dict[str, dict]:
    files: dict[str, dict] = {}
    for model in EVENT_TYPES:
        schema = model.model_json_schema()
        schema["$id"] = f"https://kubescribe.dev/schemas/{model.TYPE}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"{model.TYPE}.json"] = schema
    for document in (Transcript, Summary, SummaryContent):
        schema = document.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"kubescribe.{document.__name__.lower()}.document.json"] = schema
    return files


def all_schema_files() -> dict[str, dict]:
    files = event_schema_files()
    for target in EXTRA_GENERATORS:
        module_name, function = target.split(":")
        files.update(getattr(importlib.import_module(module_name), function)())
    return files


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in sorted(all_schema_files().items()):
        path = directory / name
        path.write_text(render(document))
        written.append(path)
    return written
