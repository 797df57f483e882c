"""``schemas/`` is generated from the models: it must match ``kubescribe schemas export`` exactly."""

from __future__ import annotations

from pathlib import Path

from services.common.schema_export import all_schema_files, render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
FIX = "regenerate with `make schemas` (kubescribe schemas export schemas) and commit the result"


def test_schemas_directory_matches_the_generated_documents() -> None:
    generated = {name: render(document) for name, document in all_schema_files().items()}
    assert SCHEMAS.is_dir(), f"{SCHEMAS} is missing: {FIX}"
    committed = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    stale = sorted(name for name in generated if committed.get(name) != generated[name])
    extra = sorted(set(committed) - set(generated))
    assert not stale, f"stale or missing in schemas/: {stale}; {FIX}"
    assert not extra, f"schemas/ has files no generator writes: {extra}; delete them or {FIX}"


def test_asyncapi_document_describes_every_event_channel() -> None:
    from services.asyncapi import schema_files

    document = schema_files()["kubescribe.asyncapi.json"]
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"kubescribe.audio.received", "kubescribe.transcript.ready", "kubescribe.summary.ready"} <= addresses
    assert {f"kubescribe.{stage}.failed" for stage in ("ingest", "dispatch", "transcribe", "summarize")} <= addresses
    assert {"AudioReceived", "TranscriptReady", "SummaryReady", "RecordingFailed"} <= set(
        document["components"]["schemas"]
    )
