"""The cluster harness's fixtures: kmock with kubescribe's resources, and a :class:`Cluster` factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from kubernetes import client as k8s

from tests.cluster.harness import Cluster
from tests.k8s._api import declare_kueue
from tests.k8s.conftest import JOBS


@pytest_asyncio.fixture(loop_scope="session")
async def make_cluster(kmock, tmp_path) -> AsyncIterator[Callable[..., Cluster]]:
    """``make_cluster(services={...})``: a Cluster on a fresh emulator; closed at the end."""
    kmock.resources[JOBS] = {"kind": "Job", "namespaced": True, "verbs": ["list", "watch", "create", "delete"]}
    for plural in ("secrets", "configmaps"):
        kmock.resources[f"v1/{plural}"] = {"kind": plural[:-1].capitalize(), "namespaced": True, "verbs": ["get"]}
    declare_kueue(kmock)
    configuration = k8s.Configuration()
    configuration.host = str(kmock.url).rstrip("/")
    api = k8s.ApiClient(configuration)
    made: list[Cluster] = []

    def factory(**options: Any) -> Cluster:
        cluster = Cluster(api, tmp_path / f"cluster-{len(made)}", **options)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        await cluster.aclose()
    api.close()
