"""A recording deleted while the summarizer waits on the LLM is dropped: nothing is written afterwards.

The real summarizer service, the LLM simulator with a slow first token, a real nats-server;
the delete happens while the request is in flight.
"""

from __future__ import annotations

import asyncio

import pytest

from services.common.events import ObjectRef
from services.common.status import RecordingStage, StatusStore
from services.common.storage import object_exists
from services.common.topology import IDEMPOTENCY_BUCKET, SUMMARIES_BUCKET
from services.ingest.deletion import delete_recording
from services.ingest.idempotency import IdempotencyClaims
from services.runtime.sim import SimConfig, SimLlmServer
from tests.integration.test_summarizer_service import _settings, _submit, running

pytestmark = pytest.mark.nats

TTFT_S = 1.5


async def test_delete_during_summarization_writes_nothing_afterwards(js, nats_settings) -> None:
    store = await StatusStore.open(js)
    claims = IdempotencyClaims(await js.key_value(IDEMPOTENCY_BUCKET), store)
    with SimLlmServer(SimConfig(model="m", ttft=TTFT_S)) as sim:
        sub = await js.subscribe("kubescribe.summary.ready")
        async with running(_settings(nats_settings, sim)):
            recording_id, _ = await _submit(js)
            for _ in range(100):  # until the summarizer has picked it up
                status = await store.get(recording_id)
                if status is not None and status.stage is RecordingStage.summarizing:
                    break
                await asyncio.sleep(0.02)
            assert status is not None and status.stage is RecordingStage.summarizing
            await delete_recording(js, store, claims, recording_id, tenant=status.tenant)
            await asyncio.sleep(TTFT_S + 2.0)  # the LLM answers; the summarizer must drop it

            assert await store.get(recording_id) is None, "the status was written back after the delete"
            assert not await object_exists(js, ObjectRef(bucket=SUMMARIES_BUCKET, name=recording_id))
            announced = []
            with_timeout = True
            while with_timeout:
                try:
                    message = await sub.next_msg(timeout=0.2)
                except Exception:
                    with_timeout = False
                else:
                    announced.append(recording_id.encode() in message.data)
            assert not any(announced), "SummaryReady was published for a deleted recording"
        await sub.unsubscribe()
