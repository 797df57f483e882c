"""``kubescribe keys`` (per-tenant API keys) and ``kubescribe delete`` (remove a recording).

Examples::

    kubescribe keys create --tenant acme         # prints the key once; only its hash is stored
    kubescribe keys create --admin               # a key that may act for any tenant (X-Tenant)
    kubescribe keys list
    kubescribe keys revoke 1f2e3d4c
    kubescribe delete 01JDZ8W3V0R4N8M0Q2K5T7Y9AB # audio, transcript, summary and status

Keys go to ``KUBESCRIBE_API_KEYS_FILE`` (default ``<data_dir>/api-keys.json``, the file
``kubescribe up`` serves); for a cluster, put that file in the Secret the chart mounts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import typer
from rich.console import Console

from services.common.settings import ApiSettings, IngestSettings, RuntimeSettings
from services.ingest.client import SubmitError, delete_recording
from services.ingest.keys import KEYS_FILE_NAME, LOCAL_KEY_FILE, create_key, read_keys, revoke_key

console = Console()
err_console = Console(stderr=True)
keys_app = typer.Typer(help="Per-tenant API keys of the ingest API.", no_args_is_help=True)


def keys_file() -> Path:
    return ApiSettings().api_keys_file or RuntimeSettings().data_dir / KEYS_FILE_NAME


def local_key() -> str | None:
    """The key of the local stack (``kubescribe up``), when there is one."""
    path = RuntimeSettings().data_dir / LOCAL_KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@keys_app.command("create")
def create(
    tenant: str | None = typer.Option(None, "--tenant", help="The tenant the key acts for (a DNS label)."),
    admin: bool = typer.Option(False, "--admin", help="A key for any tenant (chosen with X-Tenant)."),
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    if admin == (tenant is not None):
        raise typer.BadParameter("give either --tenant NAME or --admin")
    record, key = create_key(keys_file(), tenant=tenant, admin=admin)
    err_console.print(f"key {record.id} for {'admin' if admin else f'tenant {tenant}'} (shown once) in {keys_file()}:")
    console.print(key, highlight=False)


@keys_app.command("list")
def list_keys() -> None:
    """Key ids, tenants and creation times (never the keys)."""
    for key in read_keys(keys_file()):
        console.print(f"{key.id}  {'admin' if key.admin else key.tenant}  {key.created_at}", highlight=False)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The id `keys list` shows.")) -> None:
    if not revoke_key(keys_file(), key_id):
        err_console.print(f"[red]no key {key_id}[/red] in {keys_file()}")
        raise typer.Exit(1)


def delete(
    recording_id: str = typer.Argument(..., help="The recording id (a ULID)."),
    url: str | None = typer.Option(None, "--url", envvar="KUBESCRIBE_URL", help="Ingest API base URL."),
    token: str | None = typer.Option(None, "--token", envvar="KUBESCRIBE_API_TOKEN", help="API key."),
) -> None:
    """Delete a recording: its audio, transcript, summary and status; a job still on it drops it."""
    ingest = IngestSettings()
    base = url or ingest.public_url or f"http://{ingest.host}:{ingest.port}"

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base.rstrip("/"), timeout=30) as client:
            await delete_recording(client, recording_id, token=token or local_key())

    try:
        asyncio.run(run())
    except httpx.HTTPError as exc:
        err_console.print(f"[red]{type(exc).__name__}[/red]: {exc} (is the ingest API at {base}?)")
        raise typer.Exit(1) from exc
    except SubmitError as exc:
        err_console.print(f"[red]SubmitError[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"deleted {recording_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("delete")(delete)
