"""Running the simulator on loopback: in a thread for tests, in a child process for measurements."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import uvicorn

from services.runtime.local_server import LocalServer
from services.runtime.processes import free_port
from services.runtime.sim.engine import SimConfig, SimEngine
from services.runtime.sim.http import build_app


def sim_command(config: SimConfig, host: str, port: int) -> list[str]:
    """The child process that serves ``config`` (what ``isolated`` servers and ``kubescribe up`` run)."""
    return [
        sys.executable, "-m", "services.runtime.sim",
        "--host", host, "--port", str(port),
        "--config-json", json.dumps(dataclasses.asdict(config)),
    ]  # fmt: skip


class SimLlmServer(LocalServer):
    """The simulator on 127.0.0.1, in a background thread (default) or a child process.

    A thread shares the caller's GIL, which is fine for tests; ``isolated=True`` (a child process) keeps the
    simulator's CPU out of the caller's measurements (the benchmark uses it). ``engine`` (and
    ``peak_running``) is only available in thread mode.
    """

    name = "sim-llm"
    ready_timeout = 15.0

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, *, isolated: bool = False
    ) -> None:
        super().__init__(host, port or free_port(host))
        self.config = config or SimConfig()
        self.isolated = isolated
        self.engine: SimEngine | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def peak_running(self) -> int:
        """Most requests in flight at once (running + waiting): what a client's concurrency limit bounds."""
        if self.engine is None:
            raise RuntimeError("peak_running is only tracked in thread mode; read /metrics instead")
        return self.engine.peak_in_flight

    def argv(self) -> list[str]:
        return sim_command(self.config, self.host, self.port)

    def launch(self) -> None:
        if self.isolated:
            super().launch()
            return
        self.engine = SimEngine(self.config)
        uv_config = uvicorn.Config(
            build_app(self.engine),
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self._server.run, name=f"sim-llm-{self.port}", daemon=True)
        self._thread.start()

    def failed(self) -> str | None:
        if self._thread is not None and not self._thread.is_alive():
            return f"sim-llm could not listen on {self.url}"
        return super().failed()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server, self._thread = None, None
        super().stop()


def serve_forever(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run in the foreground until interrupted (``kubescribe sim-llm``)."""
    uvicorn.run(
        build_app(SimEngine(config)),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
    )
