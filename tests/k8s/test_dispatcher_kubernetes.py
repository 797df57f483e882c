"""The dispatcher behaviour suite on ``KubernetesJobBackend`` over kmock, Kueue played by ``KmockCluster``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.dispatcher.backends.fake import transcriber_runner
from tests.dispatch.basic import Deploy, DispatcherBehaviour
from tests.k8s.kueue_player import KmockCluster

pytestmark = [pytest.mark.k8s, pytest.mark.nats, pytest.mark.whisper]


class TestDispatcherKubernetes(DispatcherBehaviour):
    @pytest_asyncio.fixture(loop_scope="session")
    async def deploy(self, js, whisper_engine, api_client, namespace, make_backend) -> AsyncIterator[Deploy]:
        clusters: list[KmockCluster] = []

        def deploy(settings, handler):
            runner = transcriber_runner(js, whisper_engine)
            cluster = KmockCluster(api_client, namespace, js, handler, slots=settings.dispatcher.slots, runner=runner)
            cluster.start()
            clusters.append(cluster)
            return make_backend

        yield deploy
        for cluster in clusters:
            await cluster.aclose()
