"""``kubescribe submit``: upload recordings and, with ``--wait``, print their transcripts and summaries.

Examples::

    kubescribe submit meeting.wav                              # HTTP to the local ingest API
    kubescribe submit a.flac b.mp3 --wait --tenant acme        # wait and print the results
    kubescribe submit call.ogg --nats nats://127.0.0.1:4222    # put + publish directly over NATS
    KUBESCRIBE_API_TOKEN=s3cret kubescribe submit x.wav --url https://ingest.example.com

Exit status: 0 when every recording was accepted (and, with ``--wait``, summarized); 1 with one
readable line per failure otherwise; 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from services.common.events import TENANT_PATTERN, Priority
from services.common.status import RecordingStage
from services.ingest.client import SubmitError, auth_headers, publish_recording, upload_file

console = Console()
err_console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    )


def submit(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Audio files."),
    url: str | None = typer.Option(None, "--url", envvar="KUBESCRIBE_URL", help="Ingest API base URL."),
    nats_url: str | None = typer.Option(None, "--nats", help="Publish directly over NATS at this URL."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the transcripts and summaries and print them."),
    tenant: str = typer.Option("default", "--tenant", envvar="KUBESCRIBE_TENANT", help="Tenant (a DNS label)."),
    priority: Priority = typer.Option(Priority.normal, "--priority", help="Scheduling priority."),
    timeout: float = typer.Option(600.0, "--timeout", min=1, help="Seconds --wait waits in total."),
    token: str | None = typer.Option(None, "--token", envvar="KUBESCRIBE_API_TOKEN", help="API bearer token."),
) -> None:
    """Upload FILE... and print one recording id per file."""
    import re

    if url and nats_url:
        raise typer.BadParameter("use either --url or --nats, not both")
    if not re.match(TENANT_PATTERN, tenant):
        raise typer.BadParameter(f"tenant {tenant!r} is not a DNS label (a-z, 0-9, -)", param_hint="--tenant")
    if nats_url:
        failures = asyncio.run(_submit_nats(files, nats_url, tenant, priority, wait, timeout))
    else:
        from services.common.settings import IngestSettings

        ingest = IngestSettings()
        base = url or ingest.public_url or f"http://{ingest.host}:{ingest.port}"
        from services.ingest.keys_cli import local_key

        failures = asyncio.run(_submit_http(files, base, tenant, priority, wait, timeout, token or local_key()))
    for line in failures:
        err_console.print(f"[red]failed[/red]: {line}", highlight=False)
    if failures:
        raise typer.Exit(1)


async def _submit_http(
    files: list[Path], base: str, tenant: str, priority: Priority, wait: bool, timeout: float, token: str | None
) -> list[str]:
    failures: list[str] = []
    ids: dict[str, Path] = {}
    limits = httpx.Timeout(30.0, read=300.0)
    async with httpx.AsyncClient(base_url=base.rstrip("/"), timeout=limits) as client:
        with _progress() as progress:
            for path in files:
                task = progress.add_task(path.name, total=path.stat().st_size)
                try:
                    body = await upload_file(
                        client,
                        path,
                        tenant=None if tenant == "default" else tenant,  # a tenant key acts for its own tenant
                        priority=priority.value,
                        token=token,
                        progress=lambda n, task=task: progress.advance(task, n),
                    )
                except SubmitError as exc:
                    failures.append(str(exc))
                    continue
                except httpx.HTTPError as exc:
                    failures.append(f"{path.name}: cannot reach {base}: {type(exc).__name__}: {exc}")
                    continue
                finally:
                    progress.remove_task(task)
                ids[body["id"]] = path
                console.print(f"{body['id']}  {path.name}", highlight=False)
        if wait and ids:
            failures += await _wait_http(client, ids, timeout, token)
    return failures


async def _wait_http(client: httpx.AsyncClient, ids: dict[str, Path], timeout: float, token: str | None) -> list[str]:
    failures: list[str] = []
    pending = dict(ids)
    deadline = time.monotonic() + timeout
    headers = auth_headers(token)
    with err_console.status(f"waiting for {len(pending)} recording(s)"):
        while pending and time.monotonic() < deadline:
            for recording_id, path in list(pending.items()):
                response = await client.get(f"/v1/recordings/{recording_id}", headers=headers)
                if response.status_code != 200:
                    continue
                status = response.json()
                if status["stage"] == RecordingStage.failed.value:
                    failures.append(f"{path.name} ({recording_id}): {status.get('error_stage')}: {status.get('error')}")
                    del pending[recording_id]
                elif status["stage"] == RecordingStage.summarized.value:
                    transcript = (await client.get(f"/v1/recordings/{recording_id}/transcript", headers=headers)).json()
                    summary = (await client.get(f"/v1/recordings/{recording_id}/summary", headers=headers)).json()
                    _print_result(recording_id, path, transcript, summary)
                    del pending[recording_id]
            if pending:
                await asyncio.sleep(0.5)
    failures += [f"{p.name} ({rid}): not summarized after {timeout:.0f} s" for rid, p in pending.items()]
    return failures


async def _submit_nats(
    files: list[Path], nats_url: str, tenant: str, priority: Priority, wait: bool, timeout: float
) -> list[str]:
    from services.common.errors import KubescribeError
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings

    failures: list[str] = []
    ids: dict[str, Path] = {}
    nc = await connect(NatsSettings(url=nats_url), name="kubescribe-submit")
    try:
        js = nc.jetstream()
        with _progress() as progress:
            for path in files:
                task = progress.add_task(path.name, total=path.stat().st_size)
                try:
                    event = await publish_recording(
                        js,
                        path,
                        tenant=tenant,
                        priority=priority,
                        progress=lambda n, task=task: progress.advance(task, n),
                    )
                except KubescribeError as exc:
                    failures.append(f"{path.name}: {exc}")
                    continue
                finally:
                    progress.remove_task(task)
                ids[event.recording_id] = path
                console.print(f"{event.recording_id}  {path.name}", highlight=False)
        if wait and ids:
            failures += await _wait_nats(js, ids, timeout)
    finally:
        await nc.drain()
    return failures


async def _wait_nats(js: Any, ids: dict[str, Path], timeout: float) -> list[str]:
    from services.common.documents import Summary, Transcript
    from services.common.status import StatusStore
    from services.common.storage import get_bytes

    store = await StatusStore.open(js)
    failures: list[str] = []
    pending = dict(ids)
    deadline = time.monotonic() + timeout
    with err_console.status(f"waiting for {len(pending)} recording(s)"):
        while pending and time.monotonic() < deadline:
            for recording_id, path in list(pending.items()):
                status = await store.get(recording_id)
                if status is None:
                    continue
                if status.stage is RecordingStage.failed:
                    failures.append(f"{path.name} ({recording_id}): {status.error_stage}: {status.error}")
                    del pending[recording_id]
                elif status.stage is RecordingStage.summarized and status.transcript and status.summary:
                    transcript = Transcript.model_validate_json(await get_bytes(js, status.transcript))
                    summary = Summary.model_validate_json(await get_bytes(js, status.summary))
                    _print_result(recording_id, path, transcript.model_dump(), summary.model_dump())
                    del pending[recording_id]
            if pending:
                await asyncio.sleep(0.5)
    failures += [f"{p.name} ({rid}): not summarized after {timeout:.0f} s" for rid, p in pending.items()]
    return failures


def _print_result(recording_id: str, path: Path, transcript: dict, summary: dict) -> None:
    console.rule(f"{path.name}  {recording_id}")
    console.print("[bold]Transcript[/bold]")
    console.print(str(transcript.get("text", "")).strip(), highlight=False)
    console.print("[bold]Summary[/bold]")
    console.print(str(summary.get("text", "")).strip(), highlight=False)


def register(app: typer.Typer) -> None:
    from services.ingest import keys_cli

    app.command("submit")(submit)
    keys_cli.register(app)
