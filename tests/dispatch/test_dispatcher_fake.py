"""The dispatcher behaviour suite on ``FakeJobBackend``: scripted jobs, the real transcriber in-process."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.common.nats_client import connect
from services.common.topology import JOBS_BUCKET
from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend, transcriber_runner
from services.dispatcher.domain import JobEvent
from services.dispatcher.jobs_store import STATE_SUFFIX, JobStore
from tests.dispatch.basic import Deploy, DispatcherBehaviour
from tests.integration._dispatch import (
    delete_consumer,
    make_settings,
    publish_burst,
    running_dispatcher,
    unique_durable,
    wait_outcomes,
)

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

    async def test_a_job_state_that_a_queued_one_overwrites_is_not_written(
        self, js, nats_settings, clips, deploy
    ) -> None:
        """A fake job is queued and admitted before the dispatcher reads the first of the two: a
        state that a queued one overwrites is not put to ``<job_id>.state``, and the key ends at the
        job's outcome (what ``kubescribe jobs`` shows). Whether ``admitted`` is written depends on
        whether ``running`` was emitted before it was handled, so only ``queued`` is asserted."""
        nc = await connect(nats_settings)
        writes: dict[str, list[str]] = defaultdict(list)

        async def record(msg) -> None:
            key = msg.subject.removeprefix(f"$KV.{JOBS_BUCKET}.")
            if key.endswith(STATE_SUFFIX):
                writes[key.removesuffix(STATE_SUFFIX)].append(JobEvent.model_validate_json(msg.data).state.value)

        subscription = await nc.subscribe(f"$KV.{JOBS_BUCKET}.>", cb=record)
        settings = make_settings(nats_settings, slots=2)
        durable = unique_durable()
        try:
            async with running_dispatcher(settings, deploy(settings, None)(), durable):
                events = await publish_burst(js, [clip for clip, _ in clips[:3]])
                statuses = await wait_outcomes(js, [e.recording_id for e in events], timeout=120)
                await nc.flush()
        finally:
            await subscription.unsubscribe()
            await nc.close()
            await delete_consumer(js, durable)
        store = await JobStore.open(js)
        job_ids = {s.job_id for s in statuses.values()}
        assert job_ids and set(writes) == job_ids
        for job_id in job_ids:
            assert writes[job_id][-1] == "succeeded" and "queued" not in writes[job_id], writes
            assert (await store.get_state(job_id)).state.value == "succeeded"
