"""A real nats-server configured the way the chart configures the bundled one.

The chart hands the NATS subchart its JetStream store limit (``max_file_store``) and an
``authorization`` block whose password comes from the chart's generated Secret. Tests start
nats-server with exactly those settings, taken from the rendered chart, and talk to it with the
credentials from the rendered Secret: no hand-copied numbers.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from services.runtime.nats_server import find_nats_server, free_port
from services.runtime.processes import terminate


class ConfiguredNatsServer:
    """nats-server with a config file: JetStream store limit and optional user/password."""

    def __init__(
        self, store_dir: Path, *, max_file_store: str, user: str | None = None, password: str | None = None
    ) -> None:
        self.store_dir = store_dir
        self.port, self.monitor_port = free_port(), free_port()
        self.max_file_store = max_file_store
        self.user, self.password = user, password
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor(self) -> str:
        """host:port of the monitoring endpoint (what KEDA's triggers are given)."""
        return f"127.0.0.1:{self.monitor_port}"

    def config_text(self) -> str:
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
            f"  max_file_store: {self.max_file_store}",
            "  max_memory_store: 64MB",
            "}",
        ]
        if self.user:
            lines += ["authorization {", f'  user: "{self.user}"', f'  password: "{self.password}"', "}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats.conf"
        config.write_text(self.config_text())
        log = open(self.store_dir / "nats.log", "ab")  # noqa: SIM115 - the child keeps it
        self._process = subprocess.Popen([str(find_nats_server()), "-c", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(self.store_dir / 'nats.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as sock:
                    if sock.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not start on {self.url}")

    def jsz(self, **params: Any) -> dict[str, Any]:
        return httpx.get(f"http://{self.monitor}/jsz", params=params, timeout=5).json()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process, 10.0)

    def __enter__(self) -> ConfiguredNatsServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
