"""One shape for every server the runtime starts on loopback: nats-server, the simulator, llama.cpp.

A :class:`LocalServer` is launched, then polled with :func:`~services.runtime.processes.wait_until`
until its readiness probe passes; if it dies or times out first, the error names it and carries
its output tail, and whatever was launched is stopped. ``with Server(...) as server: server.url``
does all of that and stops it on exit.

A server that runs as a child process describes itself as a
:class:`~services.runtime.supervisor.ProcessSpec` (:meth:`LocalServer.spec`), so the same
command and probe run either standalone (a :class:`ManagedProcess` of its own, as the tests do)
or under the stack's :class:`~services.runtime.supervisor.Supervisor` beside the services.
In-process servers (a uvicorn thread, xllamacpp) override :meth:`launch`, :meth:`failed` and
:meth:`stop` instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Self

from services.runtime.processes import wait_until
from services.runtime.supervisor import ManagedProcess, ProcessSpec, http_ok

logger = logging.getLogger(__name__)


def _log_line(name: str, line: str) -> None:
    logger.debug("%s | %s", name, line)


class LocalServer:
    """Launch, readiness probe, output tail on failure, stop, context manager, url."""

    name = "server"
    scheme = "http"
    health_path = "/health"
    ready_timeout = 15.0
    stop_timeout = 10.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_file = log_file
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # ------------------------------------------------------------ what subclasses provide

    def argv(self) -> list[str]:
        """The command of a server that runs as a child process."""
        raise NotImplementedError(f"{type(self).__name__} runs in this process")

    def ready(self) -> bool:
        """The readiness probe: ``GET health_path`` answers 2xx (override for other protocols)."""
        return http_ok(f"{self.url}{self.health_path}")()

    def spec(self, name: str | None = None, *, env: dict[str, str] | None = None) -> ProcessSpec:
        """The child process, ready to be started by a supervisor or by :meth:`launch`."""
        return ProcessSpec(
            name=name or self.name,
            argv=self.argv(),
            env=dict(env or {}),
            ready=self.ready,
            ready_timeout=self.ready_timeout,
            stop_timeout=self.stop_timeout,
        )

    def launch(self) -> None:
        """Start without waiting: by default the child process of :meth:`spec`."""
        self.process = ManagedProcess(self.spec(), sink=_log_line, log_path=self.log_file)
        self.process.start()

    def failed(self) -> str | None:
        """Why waiting is pointless (it died), or None."""
        return self.process.exit_reason() if self.process else None

    def output_tail(self) -> str:
        return self.process.output_tail() if self.process else ""

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``stop_timeout``); safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            process.stop()

    # ------------------------------------------------------------ life cycle

    def start(self, timeout: float | None = None) -> None:
        """Launch and wait until ready; on failure stop what was launched and raise with the output."""
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float | None = None) -> None:
        wait_until(
            self.ready,
            f"{self.name} on {self.url}",
            self.ready_timeout if timeout is None else timeout,
            output=self.output_tail,
            failed=self.failed,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
