"""``kubescribe schemas ...``: the event contracts as JSON Schema files."""

from __future__ import annotations

from pathlib import Path

import typer

schemas_app = typer.Typer(help="Event contracts as JSON Schema and AsyncAPI.", no_args_is_help=True)


@schemas_app.command("export")
def export(
    directory: Path = typer.Argument(Path("schemas"), help="Where to write the schema files."),
) -> None:
    """Write one JSON Schema per event (and the documents, AsyncAPI and OpenAPI) into DIRECTORY."""
    from services.common.schema_export import export_schemas

    for path in export_schemas(directory):
        typer.echo(path)


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
