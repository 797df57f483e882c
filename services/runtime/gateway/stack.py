"""N simulator replicas behind the local gateway, started and stopped together.

Two users, one shape: :class:`GatewayStack` (a context manager: the GAIE experiment and the tests)
and :func:`gateway_specs` (the same processes as supervisor specs, for ``kubescribe up
--llm-replicas N``). Either way clients see one OpenAI base URL, the gateway's, and never a
replica's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self

from services.runtime.gateway.envoy import POLICIES, EnvoyGateway, GatewayError
from services.runtime.gateway.picker import PickerServer
from services.runtime.gateway.scoring import Weights
from services.runtime.processes import free_port
from services.runtime.sim.engine import SimConfig
from services.runtime.sim.server import SimLlmServer
from services.runtime.supervisor import ProcessSpec


def _servers(
    config: SimConfig,
    replicas: int,
    policy: str,
    *,
    host: str,
    port: int,
    interval: float,
    weights: Weights | None,
    config_dir: Path | None,
) -> tuple[list[SimLlmServer], PickerServer | None, EnvoyGateway]:
    if policy not in POLICIES:
        raise GatewayError(f"unknown gateway policy {policy!r}: use one of {', '.join(POLICIES)}")
    if replicas < 1:
        raise GatewayError(f"--llm-replicas must be at least 1, got {replicas}")
    sims = [SimLlmServer(config, host, free_port(host), isolated=True) for _ in range(replicas)]
    addresses = [(s.host, s.port) for s in sims]
    picker = None
    if policy == "picker":
        picker = PickerServer([f"{h}:{p}" for h, p in addresses], interval=interval, weights=weights, host=host)
    gateway = EnvoyGateway(
        addresses,
        policy,
        picker=(picker.host, picker.port) if picker else None,
        host=host,
        port=port,
        config_dir=config_dir,
    )
    return sims, picker, gateway


def gateway_specs(
    config: SimConfig,
    replicas: int,
    *,
    host: str,
    port: int,
    policy: str = "picker",
    env: dict[str, str] | None = None,
    config_dir: Path | None = None,
) -> list[ProcessSpec]:
    """Replicas ``llm-0..``, the picker (``llm-picker``) and Envoy (``llm``, on ``port``) as supervisor specs."""
    sims, picker, gateway = _servers(
        config, replicas, policy, host=host, port=port, interval=0.05, weights=None, config_dir=config_dir
    )
    specs = [sim.spec(f"llm-{i}", env=env) for i, sim in enumerate(sims)]
    if picker is not None:
        specs.append(picker.spec("llm-picker", env=env))
    specs.append(gateway.spec("llm", env=env))
    return specs


class GatewayStack:
    """``with GatewayStack(config, 2, "picker") as gw: gw.base_url`` — every process stopped on exit."""

    def __init__(
        self,
        config: SimConfig,
        replicas: int = 2,
        policy: str = "random",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float = 0.05,
        weights: Weights | None = None,
    ) -> None:
        self.policy = policy
        self.sims, self.picker, self.gateway = _servers(
            config, replicas, policy, host=host, port=port, interval=interval, weights=weights, config_dir=None
        )
        self._stack = contextlib.ExitStack()

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    @property
    def replica_urls(self) -> list[str]:
        return [sim.url for sim in self.sims]

    def start(self) -> Self:
        try:
            for sim in self.sims:
                sim.launch()
            for sim in self.sims:
                self._stack.callback(sim.stop)
                sim.wait_ready()
            if self.picker is not None:
                self._stack.enter_context(self.picker)
            self._stack.enter_context(self.gateway)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stack.close()
        for sim in self.sims:  # launched but not yet registered when start failed early
            sim.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
