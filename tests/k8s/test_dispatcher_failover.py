"""Two dispatchers on the Kubernetes backend, one SIGKILLed while its Jobs run (issue 16, item 3).

Dispatcher A runs as a process of its own (:mod:`tests.k8s._dispatcher_child`) and takes every
recording of a burst; its Jobs are created on kmock, where :class:`KmockCluster` plays Kueue and
the Job controller and holds each admitted Job until the test lets it transcribe. Dispatcher B
(the survivor) runs in the test process on the same durable consumer. A is ``kill -9``ed: it
hands nothing back. One of its Jobs is let finish at once, in the window before JetStream
redelivers A's messages (nobody holds them then); the others only once B holds them. Every
recording must end transcribed by the Job A created for it: one TranscriptReady each, no second
Job for any recording, no extra attempt (adopted, never re-planned or fought over).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.status import StatusStore
from services.common.topology import AUDIO_STREAM
from services.dispatcher.backends.fake import FakeRun, transcriber_runner
from services.dispatcher.backends.manifests import LABEL_JOB_ID
from tests.integration._dispatch import (
    ReadyCounter,
    delete_consumer,
    make_settings,
    publish_burst,
    running_dispatcher,
    synthesize_clips,
    unique_durable,
    wait_for,
    wait_outcomes,
)
from tests.k8s.kueue_player import KmockCluster

pytestmark = [pytest.mark.k8s, pytest.mark.nats, pytest.mark.whisper, pytest.mark.timeout(600)]

ACK_WAIT_S = 4.0
"""A killed dispatcher's messages come back after this: short, so the test waits seconds, not 30."""
DISPATCHER = {"ack_wait_s": ACK_WAIT_S, "target_job_audio_s": 4.0, "max_linger_s": 0.3, "slots": 3}


class Gates:
    """Each admitted Job waits for its own gate before it transcribes (so the test decides when)."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}

    def gate(self, job_id: str) -> asyncio.Event:
        return self.events.setdefault(job_id, asyncio.Event())

    async def hold(self, run: FakeRun) -> None:
        await run.start()
        await self.gate(run.job.job_id).wait()
        await run.transcribe()

    def open_all(self) -> None:
        for event in self.events.values():
            event.set()


def _start_child(emulator_url: str, namespace: str, durable: str, ready: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **{f"KUBESCRIBE_DISPATCHER_{k.upper()}": str(v) for k, v in DISPATCHER.items()}}
    argv = [sys.executable, "-m", "tests.k8s._dispatcher_child", emulator_url, namespace, durable, str(ready)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _jobs_in(api_client, namespace: str) -> list[str]:
    from kubernetes import client as k8s

    jobs = await asyncio.to_thread(k8s.BatchV1Api(api_client).list_namespaced_job, namespace)
    return sorted((job.metadata.labels or {}).get(LABEL_JOB_ID, "") for job in jobs.items)


async def test_survivor_adopts_the_jobs_of_a_sigkilled_dispatcher_and_each_finishes_once(
    js, nats_settings, whisper_engine, emulator, api_client, namespace, make_backend: Callable, tmp_path: Path
) -> None:
    clips = synthesize_clips(tmp_path / "clips", count=6)
    settings = make_settings(nats_settings, **DISPATCHER)
    durable = unique_durable()
    gates = Gates()
    runner = transcriber_runner(js, whisper_engine)
    cluster = KmockCluster(api_client, namespace, js, gates.hold, slots=3, runner=runner)
    cluster.start()
    counter = ReadyCounter()
    await counter.start(js)
    store = await StatusStore.open(js)
    ready = tmp_path / "a.ready"
    child = _start_child(str(emulator.url), namespace, durable, ready)
    try:
        await wait_for(lambda: ready.exists() or child.poll() is not None, "dispatcher A to consume", timeout=60)
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        events = await publish_burst(js, [path for path, _ in clips])
        ids = [e.recording_id for e in events]

        async def all_dispatched() -> bool:
            statuses = await asyncio.gather(*(store.get(rid) for rid in ids))
            return all(s is not None and s.job_id for s in statuses)

        await wait_for(all_dispatched, "dispatcher A to submit every recording", timeout=90)
        await wait_for(lambda: len(cluster.runs) >= 2, "two of A's Jobs to be admitted", timeout=60)
        planned = {rid: s.job_id for rid in ids if (s := await store.get(rid))}
        async with running_dispatcher(settings, make_backend(), durable):
            await asyncio.sleep(1)  # B consumes; A holds everything, so B has nothing yet
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            first = sorted(cluster.runs)[0]
            gates.gate(first).set()  # finishes while nobody holds its messages

            async def redelivered() -> bool:
                info = await js.consumer_info(AUDIO_STREAM, durable)
                return info.num_redelivered >= len(ids) - 1 or info.num_ack_pending == 0

            await wait_for(redelivered, "A's messages redelivered to B", timeout=60)
            await asyncio.sleep(1)  # B has accepted (and adopted) what it was handed
            gates.open_all()
            await wait_for(lambda: all(e.is_set() for e in gates.events.values()), "every gate open", timeout=5)

            async def drain() -> bool:  # queued Jobs are admitted as slots free: open their gates too
                gates.open_all()
                statuses = await asyncio.gather(*(store.get(rid) for rid in ids))
                return all(s is not None and s.stage.value == "transcribed" for s in statuses)

            await wait_for(drain, "every recording transcribed", timeout=240)
            statuses = await wait_outcomes(js, ids, timeout=10)
            await wait_for(lambda: all(rid in counter.counts for rid in ids), "every TranscriptReady", timeout=10)
            await asyncio.sleep(1)  # a duplicate would show up now
            info = await js.consumer_info(AUDIO_STREAM, durable)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        gates.open_all()
        await counter.stop()
        await cluster.aclose()
        await delete_consumer(js, durable)
    assert all(counter.counts[rid] == 1 for rid in ids), counter.counts
    assert {rid: s.job_id for rid, s in statuses.items()} == planned, "every recording finished in A's Job"
    assert all(s.attempts == 1 for s in statuses.values()), {rid: s.attempts for rid, s in statuses.items()}
    assert await _jobs_in(api_client, namespace) == sorted(set(planned.values())), "no second Job"
    assert sorted(cluster.runs) == sorted(set(planned.values()))
    assert info.num_ack_pending == 0, "B acked everything it adopted"
