"""Playing the cluster's controllers on kmock: the Job and Workload writes Kueue and the Job
controller would make (the emulator runs no controllers of its own), and applying rendered objects.

kmock merges a patch into the stored dict and replaces lists whole, so every condition write here
sends the object's full condition list (what a real API server's merge of ``conditions`` by type
would end with).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes import client as k8s

from services.dispatcher.backends.kubernetes import KUEUE_GROUP, KUEUE_VERSION, LABEL_JOB_UID

JOB_UID = LABEL_JOB_UID

logger = logging.getLogger(__name__)

KUEUE_PLURALS = {
    "ResourceFlavor": ("resourceflavors", False),
    "ClusterQueue": ("clusterqueues", False),
    "LocalQueue": ("localqueues", True),
    "WorkloadPriorityClass": ("workloadpriorityclasses", False),
    "Workload": ("workloads", True),
}
"""Kueue kind → (plural, namespaced): the resources the harness declares on the emulator."""


def jobs_in(emulator, namespace: str) -> list[dict[str, Any]]:
    """The Jobs the emulator holds in ``namespace`` (deleted ones left out)."""
    return [
        dict(obj)
        for (res, ns, _), obj in emulator.objects.items()
        if ns == namespace and "jobs" in str(res) and not obj.deleted
    ]


def declare_kueue(emulator) -> None:
    """Declare Kueue's resources on the emulator (a real server lists them even when empty)."""
    for kind, (plural, namespaced) in KUEUE_PLURALS.items():
        verbs = ["list", "watch", "get", "create", "patch", "delete"]
        emulator.resources[f"{KUEUE_GROUP}/{KUEUE_VERSION}/{plural}"] = {
            "kind": kind,
            "namespaced": namespaced,
            "verbs": verbs,
        }


async def patch_job_status(api: k8s.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    await asyncio.to_thread(k8s.BatchV1Api(api).patch_namespaced_job_status, name, namespace, patch)


async def patch_job(api: k8s.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    await asyncio.to_thread(k8s.BatchV1Api(api).patch_namespaced_job, name, namespace, patch)


def list_jobs(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The namespace's Jobs as dicts, those being deleted left out (blocking: call in a thread)."""
    response = k8s.BatchV1Api(api).list_namespaced_job(namespace, _preload_content=False)
    items = json.loads(response.data).get("items") or []
    return [i for i in items if not i["metadata"].get("deletionTimestamp")]


def cond(
    kind: str, reason: str = "", message: str = "", at: str = "2026-01-01T00:00:00Z", status: str = "True"
) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": at}


def plain(value: Any) -> Any:
    """Plain dicts and lists of an object (kmock's stored objects are mappings of their own)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def workload_name(job_name: str, job_uid: str) -> str:
    """Kueue's naming: ``job-<job name>-<5 hex of a hash>``, so a recreated Job gets a new Workload."""
    return f"job-{job_name}-{hashlib.sha256(job_uid.encode()).hexdigest()[:5]}"


def workload_for(
    job: dict[str, Any], *, priority_class: str | None = None, priority: int = 0, conditions: list | None = None
) -> dict[str, Any]:
    """The Workload Kueue's job reconciler makes for ``job``: owned by it, labelled with its uid,
    one pod set ``main`` from the Job's template and parallelism."""
    job = plain(job)
    meta = job["metadata"]
    uid = meta.get("uid") or ""
    labels = meta.get("labels") or {}
    spec: dict[str, Any] = {
        "queueName": labels.get("kueue.x-k8s.io/queue-name", ""),
        "podSets": [
            {
                "name": "main",
                "count": (job.get("spec") or {}).get("parallelism", 1),
                "template": job["spec"]["template"],
            }
        ],
        "priority": priority,
    }
    if priority_class:
        spec["priorityClassRef"] = {"group": KUEUE_GROUP, "kind": "WorkloadPriorityClass", "name": priority_class}
    return {
        "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
        "kind": "Workload",
        "metadata": {
            "name": workload_name(meta["name"], uid or meta["name"]),
            "namespace": meta.get("namespace"),
            "labels": {JOB_UID: uid},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": uid or "u",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {"conditions": list(conditions or [])},
    }


async def create_workload(api: k8s.ApiClient, namespace: str, job: dict[str, Any], conditions: list, **kw) -> str:
    """Play Kueue: the Workload it would make for ``job`` (see :func:`workload_for`)."""
    body = workload_for(dict(job, metadata=dict(job["metadata"], namespace=namespace)), conditions=conditions, **kw)
    await asyncio.to_thread(
        k8s.CustomObjectsApi(api).create_namespaced_custom_object,
        KUEUE_GROUP,
        KUEUE_VERSION,
        namespace,
        "workloads",
        body,
    )
    return body["metadata"]["name"]


async def patch_workload(api: k8s.ApiClient, namespace: str, name: str, conditions: list, **status: Any) -> None:
    await asyncio.to_thread(
        k8s.CustomObjectsApi(api).patch_namespaced_custom_object_status,
        KUEUE_GROUP,
        KUEUE_VERSION,
        namespace,
        "workloads",
        name,
        {"status": {"conditions": conditions, **status}},
    )


def apply(api: k8s.ApiClient, objects: list[dict[str, Any]], namespace: str) -> None:
    """Create rendered objects the harness needs on the emulator (Kueue kinds, Secrets, ConfigMaps),
    as ``kubectl apply`` of the chart would; the API server's part (a uid) is added. Blocking."""
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    for obj in objects:
        body = json.loads(json.dumps(obj))
        body["metadata"].setdefault("uid", str(uuid.uuid4()))
        kind = body["kind"]
        if kind == "Secret":  # the API server stores stringData as base64 data
            strings = body.pop("stringData", None) or {}
            data = body.setdefault("data", {})
            data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in strings.items()})
            core.create_namespaced_secret(body["metadata"].get("namespace", namespace), body)
        elif kind == "ConfigMap":
            core.create_namespaced_config_map(body["metadata"].get("namespace", namespace), body)
        elif kind in KUEUE_PLURALS:
            plural, namespaced = KUEUE_PLURALS[kind]
            if namespaced:
                ns = body["metadata"].setdefault("namespace", namespace)
                custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, plural, body)
            else:
                custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, body)
        else:
            raise ValueError(f"apply: {kind} is not something the harness applies")


class Loop:
    """A controller's reconcile loop: ``step()`` every ``poll_s`` until stopped; a failing pass is
    logged and the next one runs (a controller keeps going). ``lock`` serialises passes with
    on-demand actions (e.g. an eviction a test asks for)."""

    def __init__(self, step: Callable[[], Awaitable[None]], name: str, poll_s: float = 0.1) -> None:
        self.step, self.name, self.poll_s = step, name, poll_s
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with self.lock:
                    await self.step()
            except Exception:
                logger.exception("%s: a pass failed", self.name)
            await asyncio.sleep(self.poll_s)
