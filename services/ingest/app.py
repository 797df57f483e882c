"""The ingest service process: the HTTP API under uvicorn, on ``IngestSettings.host:port``.

``python -m services.ingest.app`` (or ``kubescribe serve ingest``) runs it like a pod would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from services.common.logs import configure_logging
from services.common.nats_client import connect
from services.common.settings import Settings
from services.common.telemetry import setup_telemetry
from services.common.topology import ensure_topology
from services.ingest.api import create_app

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: whoever runs :func:`serve` owns the signals and cancels it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings | None = None, *, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; ``ready`` is set once uvicorn listens and NATS is connected."""
    settings = settings or Settings()
    setup_telemetry("kubescribe-ingest")
    nc = await connect(settings.nats, name="kubescribe-ingest")
    try:
        await ensure_topology(nc.jetstream(), settings.streams)
        config = uvicorn.Config(
            create_app(settings, nc=nc),
            host=settings.ingest.host,
            port=settings.ingest.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # The default 64 KiB flow-control window is fine: uploads stream, nothing is buffered.
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    await task  # raises the start-up error (e.g. port in use)
                    raise RuntimeError(f"ingest could not listen on {settings.ingest.host}:{settings.ingest.port}")
                await asyncio.sleep(0.01)
            logger.info("ingest listening on http://%s:%s", settings.ingest.host, settings.ingest.port)
            if ready is not None:
                ready.set()
            # Shielded: cancelling serve must not cancel uvicorn's task (it would print a
            # CancelledError traceback); it is asked to exit below and stops on its own.
            await asyncio.shield(task)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 10)
            if not task.done():  # past the graceful timeout: stop it the hard way
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


async def _serve_until_signalled() -> None:
    task = asyncio.create_task(serve())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    """Run as a process (a container's command); SIGTERM/SIGINT shut it down cleanly."""
    configure_logging()
    asyncio.run(_serve_until_signalled())


if __name__ == "__main__":
    main()
