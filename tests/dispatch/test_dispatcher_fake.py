"""The dispatcher behaviour suite on ``FakeJobBackend``: scripted jobs, the real transcriber in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend, transcriber_runner
from tests.dispatch.basic import Deploy, DispatcherBehaviour

pytestmark = [pytest.mark.nats, pytest.mark.whisper]


class TestDispatcherFake(DispatcherBehaviour):
    @pytest_asyncio.fixture(loop_scope="session")
    async def deploy(self, js, whisper_engine) -> AsyncIterator[Deploy]:
        clusters: list[FakeCluster] = []

        def deploy(settings, handler):
            runner = transcriber_runner(js, whisper_engine)
            cluster = FakeCluster(handler, slots=settings.dispatcher.slots, runner=runner)
            clusters.append(cluster)
            return lambda: FakeJobBackend(cluster=cluster)

        yield deploy
        for cluster in clusters:
            await cluster.aclose()
