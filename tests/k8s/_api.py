"""Playing the cluster's controllers on kmock: the Job and Workload writes Kueue and the Job
controller would make (the emulator runs no controllers of its own)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from services.dispatcher.backends.kubernetes import KUEUE_GROUP, KUEUE_VERSION


def jobs_in(emulator, namespace: str) -> list[dict[str, Any]]:
    """The Jobs the emulator holds in ``namespace`` (deleted ones left out)."""
    return [
        dict(obj)
        for (res, ns, _), obj in emulator.objects.items()
        if ns == namespace and "jobs" in str(res) and not obj.deleted
    ]


async def patch_job_status(api: k8s.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    await asyncio.to_thread(k8s.BatchV1Api(api).patch_namespaced_job_status, name, namespace, patch)


async def patch_job(api: k8s.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    await asyncio.to_thread(k8s.BatchV1Api(api).patch_namespaced_job, name, namespace, patch)


def cond(kind: str, reason: str = "", message: str = "", at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}


async def create_workload(api: k8s.ApiClient, namespace: str, job: dict[str, Any], conditions: list) -> str:
    """Play Kueue: the Workload it would make for ``job``, owned by it."""
    meta = job["metadata"]
    name = f"job-{meta['name']}-abcde"
    body = {
        "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kueue.x-k8s.io/job-uid": meta.get("uid", "")},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": "u"}],
        },
        "spec": {"queueName": "team-a", "podSets": []},
        "status": {"conditions": conditions},
    }
    await asyncio.to_thread(
        k8s.CustomObjectsApi(api).create_namespaced_custom_object,
        KUEUE_GROUP,
        KUEUE_VERSION,
        namespace,
        "workloads",
        body,
    )
    return name


async def patch_workload(api: k8s.ApiClient, namespace: str, name: str, conditions: list) -> None:
    await asyncio.to_thread(
        k8s.CustomObjectsApi(api).patch_namespaced_custom_object_status,
        KUEUE_GROUP,
        KUEUE_VERSION,
        namespace,
        "workloads",
        name,
        {"status": {"conditions": conditions}},
    )
