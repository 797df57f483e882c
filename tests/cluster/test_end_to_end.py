"""A recording through the rendered chart on the cluster harness, end to end.

ingest (real HTTP) → NATS (the session's nats-server) → dispatcher with the Kubernetes backend,
its settings the environment the rendered dispatcher Deployment gets (ConfigMap, Secret, env)
→ a Job on kmock, admitted by the emulated Kueue from the rendered ClusterQueue → its pod run
from the pod template (real faster-whisper; in the built image as uid 10001 when it exists, set
``KUBESCRIBE_TEST_IMAGE`` to pick a tag, else a local process) → summarizer (rendered settings, the
LLM simulator behind the rendered gateway address). The services run in this process; only the
in-cluster addresses are routed to the test servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.js.api import DeliverPolicy

from services.common.events import SummaryReady, TranscriptReady
from services.common.topology import SUMMARIES_STREAM, SUMMARY_READY, TRANSCRIPT_READY, TRANSCRIPTS_STREAM
from services.dispatcher import app as dispatcher_app
from services.dispatcher.backends.kubernetes import KubernetesJobBackend
from services.dispatcher.backends.manifests import job_name
from services.runtime.nats_server import free_port
from services.runtime.sim import SimConfig, SimLlmServer
from services.summarizer import app as summarizer_app
from tests.cluster.harness import Cluster
from tests.integration._dispatch import stored_events
from tests.integration.ingest_support import running_ingest
from tests.speech import SENTENCES, synthesize

pytestmark = [pytest.mark.slow, pytest.mark.k8s, pytest.mark.nats, pytest.mark.whisper]

CHART_NATS = "nats://ks-nats.transcribe.svc:4222"
CPU_VALUES = {"transcriber": {"useDas": False}}
"""The chart's CPU path (kind + Kueue on CPU): no MIG slices here, so Jobs ask for cpu/memory."""
CHART_LLM = "http://ks-kubescribe-llm-sim.transcribe.svc:8000"


async def _serving(coroutine, name: str) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(coroutine(ready), name=name)
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        await task  # raises what stopped it
    assert ready.is_set(), f"{name} did not become ready"
    return task


@contextlib.asynccontextmanager
async def running_release(cluster: Cluster, nc) -> AsyncIterator[tuple[str, str | None]]:
    """The release's services on the test servers; yields the ingest URL and the release's API
    token (the chart generates one: every /v1 route needs it, as a client in the cluster would)."""
    tag = uuid.uuid4().hex[:8]
    dispatcher = await cluster.settings_of("dispatcher")
    summarizer = await cluster.settings_of("summarizer")
    ingest = await cluster.settings_of("ingest", KUBESCRIBE_INGEST_PORT=str(free_port()))
    backend = KubernetesJobBackend(dispatcher, api_client=cluster.api)
    tasks = [
        await _serving(
            lambda ready: dispatcher_app.serve(
                dispatcher, ready=ready, backend=backend, durable=f"dispatcher-{tag}", deliver_new=True
            ),
            "dispatcher",
        ),
        await _serving(
            lambda ready: summarizer_app.serve(
                summarizer, ready=ready, durable=f"summarizer-{tag}", deliver_policy=DeliverPolicy.NEW
            ),
            "summarizer",
        ),
    ]
    try:
        async with running_ingest(ingest, nc) as url:
            yield url, ingest.api.api_token
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _events(js, stream: str, subject: str, model, recording_id: str) -> list:
    """Every stored event of ``recording_id`` on ``subject`` (JetStream dedupes by Nats-Msg-Id)."""
    return await stored_events(js, subject, model, recording_id, stream=stream)


async def _upload(url: str, token: str | None, path: Path) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        response = await client.post("/v1/recordings", files={"file": (path.name, path.read_bytes(), "audio/wav")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
def sim_llm():
    server = SimLlmServer(SimConfig(ttft=0.05, itl=0.002))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def release(make_cluster, nats_server, nc, sim_llm):
    cluster = make_cluster(services={CHART_NATS: nats_server.url, CHART_LLM: sim_llm.url})
    await cluster.install(CPU_VALUES)  # in the built image when it exists, else local processes
    return cluster


async def _one_transcript_and_summary(cluster: Cluster, js, recording_id: str) -> tuple[list, list]:
    async def summarized() -> bool:
        return bool(await _events(js, SUMMARIES_STREAM, SUMMARY_READY, SummaryReady, recording_id))

    try:
        await _until(summarized, 240, "the SummaryReady")
    except AssertionError:
        logs = {name: cluster.pods.logs(name)[-2000:] for name in cluster.pods.runs}
        raise AssertionError(f"no summary; pod logs: {logs}") from None
    await asyncio.sleep(2)  # anything duplicated would have been published by now
    transcripts = await _events(js, TRANSCRIPTS_STREAM, TRANSCRIPT_READY, TranscriptReady, recording_id)
    summaries = await _events(js, SUMMARIES_STREAM, SUMMARY_READY, SummaryReady, recording_id)
    return transcripts, summaries


async def test_a_recording_goes_end_to_end_through_the_rendered_chart(release, nc, js, tmp_path) -> None:
    cluster = release
    audio = synthesize(SENTENCES[0], tmp_path / "budget.wav")
    async with running_release(cluster, nc) as (url, token):
        recording_id = await _upload(url, token, audio)
        transcripts, summaries = await _one_transcript_and_summary(cluster, js, recording_id)
    [transcript], [summary] = transcripts, summaries
    assert "budget" in (await (await js.object_store("transcripts")).get(transcript.transcript.name)).data.decode()
    assert summary.recording_id == recording_id
    assert job_name(transcript.job_id) in cluster.pods.started
    [job] = set(cluster.pods.started)  # one Job, one pod: admitted by the emulated Kueue, run as its template says
    assert cluster.kueue.admitted == [job]


async def test_an_eviction_mid_run_still_ends_in_exactly_one_transcript_and_summary(release, nc, js, tmp_path) -> None:
    cluster = release
    audio = synthesize(SENTENCES[1], tmp_path / "design.wav")
    async with running_release(cluster, nc) as (url, token):
        recording_id = await _upload(url, token, audio)

        async def pod_running() -> bool:
            return any(cluster.pods.running(name) for name in cluster.pods.runs)

        await _until(pod_running, 120, "the first pod")
        [first] = [name for name in cluster.pods.runs if cluster.pods.running(name)]
        # At once: the transcriber is still starting (importing, loading the model).
        await cluster.kueue.evict(first, "PodsReadyTimeout", "Exceeded the PodsReady timeout")
        transcripts, summaries = await _one_transcript_and_summary(cluster, js, recording_id)
    [killed] = cluster.pods.runs[first].pods
    assert killed.process.returncode not in (None, 0), "the first pod was to be evicted mid-run"
    assert len(transcripts) == 1, transcripts
    assert len(summaries) == 1, summaries
    assert cluster.kueue.admitted[0] == first
    assert len(cluster.kueue.admitted) == 2  # the requeued recording ran in a second Job
    assert job_name(transcripts[0].job_id) == cluster.kueue.admitted[1]
