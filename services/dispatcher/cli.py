"""``kubescribe jobs``: transcription jobs from the ``jobs`` KV bucket.

Examples::

    kubescribe jobs               # the last 20 jobs: id, state, model, profile, recordings, audio
    kubescribe jobs --limit 100 --json
"""

from __future__ import annotations

import asyncio
import json

import typer


async def _list(limit: int) -> list[dict]:
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings
    from services.dispatcher.jobs_store import JobStore

    nc = await connect(NatsSettings(), name="kubescribe-cli")
    try:
        store = await JobStore.open(nc.jetstream())
        rows = []
        for job_id in (await store.job_ids())[-limit:]:
            job, state = await store.get(job_id), await store.get_state(job_id)
            if job is None:
                continue
            rows.append(
                {
                    "job_id": job.job_id,
                    "state": state.state.value if state else "submitted",
                    "model": job.model,
                    "profile": job.profile,
                    "recordings": len(job.recordings),
                    "audio_s": round(job.audio_s, 1),
                    "attempt": job.attempt,
                    "created_at": job.created_at.isoformat(),
                    "reason": state.reason if state else None,
                }
            )
        return rows
    finally:
        await nc.drain()


def jobs(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the newest N jobs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List transcription jobs and their last state."""
    rows = asyncio.run(_list(limit))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "state", "model", "profile", "recordings", "audio s", "attempt")
    for row in rows:
        table.add_row(
            row["job_id"],
            row["state"],
            row["model"],
            row["profile"],
            str(row["recordings"]),
            str(row["audio_s"]),
            str(row["attempt"]),
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)
