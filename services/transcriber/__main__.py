"""The transcription Job entrypoint: ``python -m services.transcriber --job ID``.

The same command runs in a Kubernetes Job's pod and as a local subprocess. ``--job -`` reads
the job id from the first line of stdin instead: the local backend pre-spawns one process per
slot, which imports faster-whisper, loads the model and connects to NATS while the slot is
still busy, and hands it a job id once the slot is granted (an empty stdin exits 0).

Exit status: 0 when every recording of the job has a durable outcome (transcribed, or failed
with a reason), 2 when the job spec does not exist, 1 on any other failure (the dispatcher then
retries the recordings that have no outcome yet).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

logger = logging.getLogger("services.transcriber")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.transcriber", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--job",
        required=True,
        help="job id in the `jobs` KV bucket, or '-' to read 'ID [HANDED_AT_NS]' from stdin",
    )
    parser.add_argument(
        "--handed-at-ns",
        type=int,
        default=None,
        help="when the job was handed to this process (epoch ns); default: process start (a pod)",
    )
    parser.add_argument(
        "--preload", default=None, help="model to load while connecting (and, with --job -, before the id arrives)"
    )
    return parser.parse_args(argv)


PROCESS_STARTED_NS = time.time_ns()
"""When this process started: the start of ``model_load`` for a job given on the command line (a pod)."""


def _read_job_id() -> tuple[str, int]:
    """The job id from stdin and when it was handed over.

    The backend writes ``ID HANDED_AT_NS`` when the slot is granted; the process may still be
    starting or loading the model then, and that wait belongs to the job's ``model_load``.
    """
    fields = sys.stdin.readline().split()
    arrived_ns = time.time_ns()
    if not fields:
        return "", arrived_ns
    handed_ns = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else arrived_ns
    return fields[0], min(handed_ns, arrived_ns)


async def _main(args: argparse.Namespace) -> int:
    # Listen for the job id before the heavy imports, so its arrival time is exact even while the
    # model is still loading: that wait is the job's model_load, not admission.
    pending_job_id = asyncio.ensure_future(asyncio.to_thread(_read_job_id)) if args.job == "-" else None
    from services.common.nats_client import connect
    from services.common.settings import Settings
    from services.common.telemetry import setup_telemetry, shutdown_telemetry
    from services.dispatcher.jobs_store import JobStore
    from services.transcriber.engine import Engine
    from services.transcriber.job import run_job

    settings = Settings()
    setup_telemetry("kubescribe-transcriber")
    engine = Engine(settings.transcriber)
    # The model loads in a thread while we connect and read the spec: they overlap.
    preload = asyncio.ensure_future(asyncio.to_thread(engine.load, args.preload)) if args.preload else None
    nc = await connect(settings.nats, name="kubescribe-transcriber")
    try:
        job_id = args.job
        started_ns = args.handed_at_ns or PROCESS_STARTED_NS
        if preload is not None:
            await preload
        if pending_job_id is not None:
            job_id, started_ns = await pending_job_id
            if not job_id:
                return 0  # the backend closed an idle pre-spawned process
        js = nc.jetstream()
        job = await (await JobStore.open(js)).get(job_id)
        if job is None:
            print(f"job {job_id!r} not found in the jobs KV bucket", file=sys.stderr)
            return 2
        outcome = await run_job(js, job, engine, started_ns=started_ns)
        logger.info(
            "job %s: %d transcribed, %d failed, %d skipped",
            job_id,
            len(outcome.transcribed),
            len(outcome.failed),
            len(outcome.skipped),
        )
        return 0
    finally:
        await nc.drain()
        shutdown_telemetry()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from services.common.logs import configure_logging

    configure_logging()
    args = _parse(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one readable line; the dispatcher retries unfinished recordings
        print(f"transcriber failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
