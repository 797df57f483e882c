"""The image itself: what the chart's pods and the dispatcher's Jobs run, run in the image.

Every environment comes from the rendered chart (ConfigMap, Secret, Deployment env) or from
``build_job`` with the dispatcher's rendered settings; the only substitutions are the test
nats-server's URL and loopback ports, since there is no cluster DNS here.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.events import TranscriptReady
from services.common.ids import new_id
from services.common.nats_client import connect
from services.common.settings import KubernetesSettings
from services.common.storage import get_bytes, put_bytes
from services.common.topology import TRANSCRIPT_READY, TRANSCRIPTS_STREAM, ensure_topology
from services.dispatcher.backends.manifests import build_job
from services.dispatcher.domain import JobRecording, TranscriptionJob
from services.dispatcher.jobs_store import JobStore
from services.runtime.nats_server import free_port
from tests.charts.conftest import RELEASE, container_env, find, one, render
from tests.charts.nats_server import ConfiguredNatsServer
from tests.charts.test_jetstream import client_settings, stream_settings

# The first session on a machine builds the image (minutes): above the suite's 300 s default.
pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.nats, pytest.mark.timeout(1800)]

SAMPLES = Path(__file__).resolve().parents[2] / "services" / "runtime" / "samples"
FULLNAME = f"{RELEASE}-kubescribe"
VALUES: dict[str, Any] = {"transcriber": {"useDas": False}}
"""CPU Jobs (no GPU here); everything else is the chart's default."""


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    return render(VALUES)


@pytest.fixture(scope="module")
def secret(chart) -> dict[str, str]:
    return one(chart, "Secret", f"{RELEASE}-nats-auth")["stringData"]


@pytest.fixture(scope="module")
def shared_env(chart) -> dict[str, str]:
    """The ConfigMap every pod and Job loads with envFrom."""
    return one(chart, "ConfigMap", f"{FULLNAME}-env")["data"]


@pytest.fixture(scope="module")
def nats(tmp_path_factory, chart, secret, shared_env) -> ConfiguredNatsServer:
    """The bundled NATS as the chart configures it: store limit and the generated credentials."""
    server = ConfiguredNatsServer(
        tmp_path_factory.mktemp("image-nats"),
        max_file_store="32Gi",
        user=secret["KUBESCRIBE_NATS_USER"],
        password=secret["KUBESCRIBE_NATS_PASSWORD"],
    )
    server.start()
    yield server
    server.stop()


def pod_env(shared: dict[str, str], secret: dict[str, str], nats: ConfiguredNatsServer, own: dict[str, str]):
    """envFrom (ConfigMap, then the Secret) under the container's own env, as the kubelet builds it."""
    env = {**shared, **secret, **{k: v for k, v in own.items() if v is not None}}
    env["KUBESCRIBE_NATS_URL"] = nats.url
    return env


def test_help_runs_as_10001_on_a_read_only_root(container, tmp_path):
    run = container.start(["kubescribe", "--help"], {}, tmp_path / "tmp")
    assert run.exit_code(120) == 0, run.output()
    assert "serve" in run.output()
    probe = container.start(
        ["sh", "-c", "id -u; touch /probe 2>/dev/null && echo root-writable; touch /tmp/probe && echo tmp-writable"],
        {},
        tmp_path / "probe",
    )
    assert probe.exit_code(60) == 0
    lines = probe.output().splitlines()
    assert "10001" in lines and "tmp-writable" in lines and "root-writable" not in lines


@pytest.mark.parametrize("component", ["ingest", "dispatcher", "summarizer"])
def test_service_container_command_gets_ready(component, container, chart, secret, shared_env, nats, tmp_path):
    """The Deployment's args after tini, its env, against the chart-configured NATS, until ready."""
    [spec] = one(chart, "Deployment", f"{FULLNAME}-{component}")["spec"]["template"]["spec"]["containers"]
    assert "command" not in spec  # tini stays the entrypoint
    port = free_port()
    own = container_env(one(chart, "Deployment", f"{FULLNAME}-{component}"))
    env = pod_env(shared_env, secret, nats, own)
    if component == "ingest":
        env |= {"KUBESCRIBE_INGEST_HOST": "127.0.0.1", "KUBESCRIBE_INGEST_PORT": str(port)}
        ready = f"http://127.0.0.1:{port}/readyz"
    else:
        env["KUBESCRIBE_METRICS_PORT"] = str(port)
        ready = f"http://127.0.0.1:{port}/metrics"
    if component == "dispatcher":
        # No Kubernetes API here: the local backend (transcriber subprocesses in the same image).
        env |= {"KUBESCRIBE_BACKEND": "local", "KUBESCRIBE_DISPATCHER_SLOTS": "1"}
    run = container.start(spec["args"], env, tmp_path / "tmp")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert run.process.poll() is None, f"{component} exited:\n{run.output()}"
            assert time.monotonic() < deadline, f"{component} not ready in 120s:\n{run.output()}"
            time.sleep(0.5)
        run.terminate()
        assert run.exit_code(60) in (0, 143), run.output()
    finally:
        if run.process.poll() is None:
            run.kill()


async def test_one_transcription_job_runs_in_the_image(
    container, chart, secret, shared_env, nats, tmp_path, monkeypatch
):
    """Exactly the pod ``build_job`` produces (args after tini, env, envFrom, volumes, user), in
    the image, turns a recording into a TranscriptReady on the chart-configured NATS."""
    dispatcher_env = container_env(one(chart, "Deployment", f"{FULLNAME}-dispatcher"))
    for name, value in dispatcher_env.items():  # the dispatcher's settings, as its pod reads them
        monkeypatch.setenv(name, value)
    settings = KubernetesSettings()
    nc = await connect(client_settings(nats, secret), name="image-job-test")
    try:
        js = nc.jetstream()
        await ensure_topology(js, stream_settings(shared_env))
        recording_id = new_id()
        audio = await put_bytes(js, "audio", f"{recording_id}.wav", (SAMPLES / "standup.wav").read_bytes())
        job = TranscriptionJob(
            model=dispatcher_env["KUBESCRIBE_DISPATCHER_DEFAULT_MODEL"],
            profile="cpu",
            recordings=[JobRecording(recording_id=recording_id, audio=audio, duration_s=12.0)],
        )
        await (await JobStore.open(js)).put(job)

        manifest = build_job(job, settings)
        pod = manifest["spec"]["template"]["spec"]
        [spec] = pod["containers"]
        assert "command" not in spec and pod["securityContext"]["runAsUser"] == 10001
        assert [e["configMapRef"]["name"] for e in spec["envFrom"] if "configMapRef" in e] == [f"{FULLNAME}-env"]
        assert [e["secretRef"]["name"] for e in spec["envFrom"] if "secretRef" in e] == [f"{RELEASE}-nats-auth"]
        env = pod_env(shared_env, secret, nats, {e["name"]: e["value"] for e in spec["env"]})
        mounts = {m["mountPath"]: tmp_path / m["name"] for m in spec["volumeMounts"]}
        tmp = mounts.pop("/tmp")
        run = container.start(spec["args"], env, tmp, volumes=mounts)
        assert await asyncio.to_thread(run.exit_code, 600) == 0, run.output()

        # The stream keeps the event: read it after the Job (an idle ephemeral consumer would expire).
        ready = await js.pull_subscribe(TRANSCRIPT_READY, stream=TRANSCRIPTS_STREAM)
        [message] = await ready.fetch(1, timeout=30)
        await message.ack()
        event = message.data.decode()
        assert recording_id in event and job.job_id in event
        transcript = TranscriptReady.model_validate_json(message.data)
        document = (await get_bytes(js, transcript.transcript)).decode().lower()
        for word in ("login", "payment", "database"):
            assert word in document
    finally:
        await nc.close()


def test_no_kubernetes_settings_are_lost(chart):
    """Every KUBESCRIBE_KUBERNETES_* the chart sets is a KubernetesSettings field (the Job test relies on it)."""
    env = container_env(one(chart, "Deployment", f"{FULLNAME}-dispatcher"))
    fields = set(KubernetesSettings.model_fields)
    names = {k.removeprefix("KUBESCRIBE_KUBERNETES_").lower() for k in env if k.startswith("KUBESCRIBE_KUBERNETES_")}
    assert names <= fields
    assert find(chart, "ServiceAccount", f"{FULLNAME}-transcriber")
