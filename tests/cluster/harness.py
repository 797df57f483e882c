"""``Cluster``: the rendered chart installed on kmock, with Kueue emulated and Jobs' pods run.

``install`` renders charts/kubescribe with the chart tests' renderer, applies what the emulator
needs from it (the Kueue objects, the Secrets and the ConfigMaps; the Deployments are run by the
tests themselves, in-process, with :meth:`settings_of`) and starts :class:`~tests.k8s.kueue_player.Kueue`
and :class:`~tests.cluster.pod_runner.PodRunner`. ``services`` maps in-cluster addresses to the
test servers (the harness's cluster DNS): the rendered NATS Secret then points at the test
nats-server, for the Jobs and the services alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from services.common.settings import Settings
from tests.charts.conftest import NAMESPACE, find, one, render
from tests.cluster.env import resolve_env, route, settings_from_env
from tests.cluster.pod_runner import PodRunner
from tests.k8s._api import KUEUE_PLURALS, apply
from tests.k8s.kueue_player import Kueue

APPLIED = {"Secret", "ConfigMap", *KUEUE_PLURALS}


@dataclass
class Cluster:
    api: k8s.ApiClient
    workdir: Path
    namespace: str = NAMESPACE
    services: dict[str, str] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    kueue: Kueue | None = None
    pods: PodRunner | None = None

    async def install(
        self, values: dict[str, Any] | None = None, *, run_pods: bool = True, in_image: bool | None = None
    ) -> None:
        self.objects = render(values)
        applied = [self._routed(o) for o in self.objects if o["kind"] in APPLIED]
        await asyncio.to_thread(apply, self.api, applied, self.namespace)
        self.kueue = Kueue(self.api, self.namespace)
        self.kueue.start()
        if run_pods:
            self.pods = PodRunner(self.api, self.namespace, self.workdir, in_image=in_image)
            self.pods.start()

    def _routed(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] in ("Secret", "ConfigMap"):
            for key in ("stringData", "data"):
                if obj.get(key):
                    obj = dict(obj, **{key: route({k: str(v) for k, v in obj[key].items()}, self.services)})
        return obj

    def deployment(self, component: str) -> dict[str, Any]:
        return one(self.objects, "Deployment", f"ks-kubescribe-{component}")

    def kueue_object(self, kind: str) -> list[dict[str, Any]]:
        return find(self.objects, kind)

    async def env_of(self, component: str) -> dict[str, str]:
        """The environment the component's container gets in the cluster, routed to the test servers."""
        [container] = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        env = await asyncio.to_thread(resolve_env, self.api, self.namespace, container)
        return route(env, self.services)

    async def settings_of(self, component: str, **overrides: str) -> Settings:
        return settings_from_env({**await self.env_of(component), **overrides})

    async def aclose(self) -> None:
        if self.pods is not None:
            await self.pods.aclose()
        if self.kueue is not None:
            await self.kueue.aclose()
