"""Scale-out chaos (issue 16, item 4): a 3-node JetStream cluster, two of every service, and the
failures a platform engineer fears most, during a replay of 200 short recordings.

The stack is ``kubescribe up --nats-cluster 3 --replicas 2`` (:class:`EmbeddedStack`, local
backend, simulator LLM). While uploads arrive (round-robin over both ingests, retried with their
Idempotency-Key as a client would): the nats-server that leads the AUDIO stream is SIGKILLed (the
cluster elects another leader, the supervisor restarts the node, which catches up), one
dispatcher is SIGKILLed (its held messages come back after ``ack_wait``, its transcriber dies
with it), and the summarizers are restarted one after the other (SIGTERM, a rolling restart).
Every accepted recording must end summarized with exactly one SummaryReady and one transcript
object, and no idempotency claim may be orphaned: the same checks as the single-node chaos test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.common.status import RecordingStage
from services.runtime.stack import EmbeddedStack, quiet_sink
from tests.chaos.support import (
    Replay,
    assert_exactly_once,
    assert_no_traceback,
    log_tails,
    make_clips,
    ready_again,
    wait_all_summarized,
)
from tests.chaos.test_chaos import STACK_ENV
from tests.scale.test_nats_cluster import stream_leader

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RECORDINGS = 200
UPLOAD_SPACING_S = 0.2
"""200 uploads over ~40 s: every failure lands while recordings arrive and are worked on."""
SETTLE_TIMEOUT_S = 600
ENV = {
    **STACK_ENV,
    "KUBESCRIBE_DISPATCHER_SLOTS": "1",  # two dispatchers, one transcriber each, on two cores
}


async def _kill(stack: EmbeddedStack, name: str, sig: int, rows: list) -> None:
    process = stack.process(name)
    assert process is not None and process.pid is not None, name
    pid, started = process.pid, time.monotonic()
    os.kill(pid, sig)
    await ready_again(stack, name, pid)
    rows.append((name, signal.Signals(sig).name, time.monotonic() - started))


async def test_cluster_and_replicas_ride_through_leader_dispatcher_and_summarizer_loss(tmp_path: Path) -> None:
    clips = make_clips(tmp_path)
    stack = EmbeddedStack(
        tmp_path / "data", llm="sim", nats_port=0, llm_port=0, ingest_port=0, sink=quiet_sink,
        sim_config={"ttft": 0.02, "itl": 0.001}, env=ENV, nats_cluster=3, replicas=2,
    )  # fmt: skip
    try:
        stack.start()
    except Exception as exc:  # pragma: no cover - dumps what the children said
        stack.stop()
        pytest.fail(f"embedded stack did not start: {exc}\n{log_tails(stack)}")
    rows: list[tuple[str, str, float]] = []
    try:
        nc = await connect(NatsSettings(url=stack.nats_url), name="scale-chaos-test")
        js = nc.jetstream()
        replay = Replay(stack, clips, RECORDINGS, UPLOAD_SPACING_S, concurrency=16)
        uploads = asyncio.create_task(replay.run())
        try:
            await asyncio.sleep(6)
            leader = await stream_leader(js)
            await _kill(stack, leader, signal.SIGKILL, rows)
            await asyncio.sleep(4)
            await _kill(stack, "dispatcher-1", signal.SIGKILL, rows)
            for name in stack.names("summarizer"):
                await asyncio.sleep(3)
                await _kill(stack, name, signal.SIGTERM, rows)
            await uploads
            ids = list(replay.ids.values())
            started = time.monotonic()
            stages = await wait_all_summarized(nc, ids, timeout=SETTLE_TIMEOUT_S)
            print(f"\nscale chaos: {len(ids)} recordings, settled {time.monotonic() - started:.0f}s after the uploads")
            for name, sig, ready_s in rows:
                print(f"  {sig:<8} {name:<13} ready again in {ready_s:.2f}s")
            print("  new AUDIO leader:", await stream_leader(js), "restarts:", stack.restarts())
            assert not replay.errors, replay.errors
            assert len(ids) == RECORDINGS and len(set(ids)) == RECORDINGS
            unfinished = {rid: s for rid, s in stages.items() if s != RecordingStage.summarized.value}
            assert not unfinished, f"{len(unfinished)} not summarized: {unfinished}\n{log_tails(stack)}"
            await assert_exactly_once(nc, ids)
            assert_no_traceback(stack)
            restarts = stack.restarts()
            assert restarts[leader] >= 1 and restarts["dispatcher-1"] >= 1, restarts
            assert all(restarts[name] >= 1 for name in stack.names("summarizer")), restarts
        finally:
            uploads.cancel()
            with contextlib.suppress(BaseException):
                await uploads
            await nc.close()
    finally:
        stack.stop()
