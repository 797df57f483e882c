"""The pod runner on kmock: a Job's pod template run as a local process, status written back.

Small hand-written Jobs (``sh -c``), so each rule is visible: env from the rendered Secret and
ConfigMap, volumes as directories, the security context, exit codes to Job conditions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.pod_runner import IMAGE

pytestmark = [pytest.mark.k8s]


def _job(name: str, script: str, **pod: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "kubescribe:test",
        "command": ["sh", "-c", script],
        "env": pod.pop("env", []),
        "envFrom": pod.pop("envFrom", []),
        "securityContext": pod.pop("container_security", {}),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "transcribe"},
        "spec": {
            "backoffLimit": pod.pop("backoffLimit", 0),
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                    **pod,
                }
            },
        },
    }


async def _run(make_cluster, job: dict[str, Any], *, in_image: bool = False) -> tuple[dict[str, Any], str]:
    cluster = make_cluster(services={"nats://ks-nats.transcribe.svc:4222": "nats://127.0.0.1:4999"})
    await cluster.install(in_image=in_image)
    batch = k8s.BatchV1Api(cluster.api)
    await asyncio.to_thread(batch.create_namespaced_job, "transcribe", job)
    name = job["metadata"]["name"]
    for _ in range(300):
        status = (await asyncio.to_thread(batch.read_namespaced_job, name, "transcribe")).to_dict()["status"] or {}
        if any(c["type"] in ("Complete", "Failed") for c in status.get("conditions") or []):
            return status, cluster.pods.logs(name)
        await asyncio.sleep(0.1)
    raise AssertionError(f"Job {name} did not finish: {status}")


def _condition(status: dict[str, Any]) -> tuple[str, str]:
    [last] = [c for c in status["conditions"] if c["type"] in ("Complete", "Failed")]
    return last["type"], last.get("reason") or ""


async def test_env_from_the_rendered_secret_and_config_map_and_the_tmp_volume(make_cluster) -> None:
    job = _job(
        "env",
        'echo "url=$KUBESCRIBE_NATS_URL level=$LEVEL home=$HOME" && touch /tmp/x 2>/dev/null; echo "tmp=$PWD"',
        env=[
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "ks-kubescribe-env", "key": "KUBESCRIBE_LOG_LEVEL"}},
            },
        ],
        envFrom=[{"configMapRef": {"name": "ks-kubescribe-env"}}, {"secretRef": {"name": "ks-nats-auth"}}],
    )
    status, log = await _run(make_cluster, job)
    assert _condition(status) == ("Complete", "")
    assert (status["succeeded"], status["active"]) == (1, 0)
    assert status["start_time"] is not None and status["completion_time"] is not None
    assert "url=nats://127.0.0.1:4999 level=INFO" in log  # the Secret routed to the test server
    assert "home=" in log and "/pods/env-0/tmp" in log  # HOME=/tmp is the pod's emptyDir


async def test_a_missing_secret_key_fails_the_pod_before_it_starts(make_cluster) -> None:
    ref = {"secretKeyRef": {"name": "ks-nats-auth", "key": "NOPE"}}
    status, log = await _run(make_cluster, _job("nokey", "true", env=[{"name": "X", "valueFrom": ref}]))
    assert _condition(status) == ("Failed", "CreateContainerConfigError")
    assert "couldn't find key NOPE in Secret transcribe/ks-nats-auth" in log


async def test_run_as_non_root_refuses_a_root_user(make_cluster) -> None:
    job = _job("root", "true", securityContext={"runAsNonRoot": True, "runAsUser": 0})
    status, log = await _run(make_cluster, job)
    assert _condition(status) == ("Failed", "CreateContainerConfigError")
    assert "container has runAsNonRoot and image will run as root" in log


async def test_a_failing_pod_is_retried_up_to_the_backoff_limit(make_cluster) -> None:
    status, log = await _run(make_cluster, _job("fails", "echo attempt; exit 3", backoffLimit=1))
    assert _condition(status) == ("Failed", "BackoffLimitExceeded")
    assert status["failed"] == 2
    assert log.count("attempt") == 2


@pytest.mark.slow
async def test_in_the_built_image_the_pod_runs_as_its_user_with_its_volumes(make_cluster, image) -> None:
    """``image``: the session's build (it skips without buildah or root, as the image tests do)."""
    assert image == IMAGE
    job = _job(
        "image",
        'echo "uid=$(id -u) url=$KUBESCRIBE_NATS_URL" && touch /tmp/written && ls /tmp',
        securityContext={"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        envFrom=[{"secretRef": {"name": "ks-nats-auth"}}],
    )
    status, log = await _run(make_cluster, job, in_image=True)
    assert _condition(status) == ("Complete", ""), log
    assert "uid=10001 url=nats://127.0.0.1:4999" in log
    assert "written" in log
