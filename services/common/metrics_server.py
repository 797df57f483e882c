"""A Prometheus ``/metrics`` endpoint for services that have no HTTP server of their own.

The dispatcher and the summarizer only talk NATS; in a cluster Prometheus (and the chart's
ServiceMonitor) scrapes them on ``KUBESCRIBE_METRICS_PORT``. The embedded runtime also uses a
successful scrape as a liveness check of each consumer process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import ConfigurationError

logger = logging.getLogger(__name__)


class MetricsSettings(BaseSettings):
    """Where the exporter listens."""

    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_METRICS_", extra="ignore", frozen=True)

    port: int | None = None
    """Unset: no exporter (a process embedded in another one, or tests). 0 picks a free port."""
    host: str = "0.0.0.0"
    """All interfaces, so a pod's scrape target works; the embedded runtime sets 127.0.0.1."""


@dataclass
class MetricsServer:
    """A running exporter; ``stop()`` releases the port."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int | None = None,
    *,
    host: str | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsServer | None:
    """Serve ``registry`` on ``port`` (default: ``KUBESCRIBE_METRICS_PORT``); None when no port is set."""
    settings = MetricsSettings()
    port = settings.port if port is None else port
    if port is None:
        return None
    host = host or settings.host
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc}; set KUBESCRIBE_METRICS_PORT to a free port"
        ) from exc
    actual = server.server_address[1]
    logger.info("metrics on http://%s:%d/metrics", host, actual)
    return MetricsServer(host=host, port=actual, _server=server, _thread=thread)
