"""Kueue and the Job controller, played on kmock: two players over one set of API writes.

- :class:`KmockCluster`: for the dispatcher behaviour suite. A
  :class:`~services.dispatcher.backends.fake.FakeCluster` whose state changes are made real on the
  emulator instead of being emitted: it polls the namespace for the Jobs the
  ``KubernetesJobBackend`` creates, queues them by priority on its slots, and for each admitted one
  creates an Admitted Workload, unsuspends the Job and patches its status as the suite's script
  says; the transcriber's work runs in-process, reading the spec by the Job's job-id label.
- :class:`Kueue`: for the cluster harness (``tests/cluster``). Kueue's admission controller
  emulated from the rendered ClusterQueue/LocalQueue/WorkloadPriorityClass objects: Workloads,
  queueing strategy, quota per flavor, preemption and eviction; the Jobs' pods are run by
  :class:`tests.cluster.pod_runner.PodRunner`.

Both write Workloads through :mod:`tests.k8s._api` (one shape of Workload, one condition list).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from nats.js import JetStreamContext

from services.common.events import utcnow
from services.dispatcher.backends.fake import FakeCluster, FakeRun, Handler, Runner
from services.dispatcher.backends.kubernetes import KUEUE_GROUP, KUEUE_VERSION
from services.dispatcher.backends.manifests import LABEL_JOB_ID, LABEL_PRIORITY_CLASS, LABEL_QUEUE, job_name
from services.dispatcher.domain import JobState
from services.dispatcher.jobs_store import JobStore
from tests.k8s._api import (
    Loop,
    cond,
    create_workload,
    list_jobs,
    patch_job,
    patch_job_status,
    patch_workload,
    workload_for,
)
from tests.k8s._quota import Assignment, Usage, add, assign, pod_set_requests, quantity_text

logger = logging.getLogger(__name__)


class KmockCluster(FakeCluster):
    """The behaviour suite's scripted cluster, its state changes written to the emulator."""

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        js: JetStreamContext,
        handler: Handler | None = None,
        *,
        slots: int | None = 1,
        runner: Runner | None = None,
    ) -> None:
        super().__init__(handler, slots=slots, runner=runner)
        self.api, self.namespace, self.js = api, namespace, js
        self._workloads: dict[str, str] = {}
        self._store: JobStore | None = None
        self._loop = Loop(self._poll, "kmock-cluster")

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.stop()
        await super().aclose()

    async def _poll(self) -> None:
        """Pick up new Jobs (what the Kueue controller's watch does)."""
        self._store = self._store or await JobStore.open(self.js)
        for item in await asyncio.to_thread(list_jobs, self.api, self.namespace):
            job_id = ((item.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB_ID)
            if job_id and job_id not in self.runs:
                spec = await self._store.get(job_id)
                if spec is not None:
                    await self.enqueue(spec)

    async def _effect(self, run: FakeRun, state: JobState, fields: dict[str, object]) -> None:
        name = job_name(run.job.job_id)
        ns, api = self.namespace, self.api
        if state is JobState.admitted:
            job = await asyncio.to_thread(k8s.BatchV1Api(api).read_namespaced_job, name, ns, _preload_content=False)
            self._workloads[name] = await create_workload(api, ns, json.loads(job.data), [cond("Admitted", "Admitted")])
            await patch_job(api, ns, name, {"spec": {"suspend": False}})
        elif state is JobState.running:
            await patch_job_status(api, ns, name, {"status": {"active": 1, "ready": 1}})
        elif state is JobState.succeeded:
            await patch_job_status(
                api, ns, name, {"status": {"active": 0, "ready": 0, "succeeded": 1, "conditions": [cond("Complete")]}}
            )
        elif state is JobState.failed:
            failed = cond("Failed", "PodFailed", str(fields.get("reason") or ""))
            await patch_job_status(api, ns, name, {"status": {"active": 0, "ready": 0, "conditions": [failed]}})
        elif state is JobState.evicted:
            kind, _, message = str(fields.get("reason") or "Evicted: ").partition(": ")
            await patch_workload(api, ns, self._workloads[name], [cond("Admitted"), cond(kind, "Kueue", message)])


# --- the emulated Kueue admission controller --------------------------------------------------

ADMITTED_MESSAGE = "The workload is admitted"


@dataclass
class _Workload:
    """Kueue's view of one Workload: what it asks for and where it stands."""

    name: str
    job: str
    job_uid: str
    queue: str
    priority: int
    seq: int
    requests: dict[str, Decimal]
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster_queue: str | None = None
    assignment: Assignment | None = None
    finished: bool = False

    @property
    def admitted(self) -> bool:
        return self.assignment is not None

    def set(self, condition: dict[str, Any]) -> list[dict[str, Any]]:
        """Set one condition (by type, as the API's list-map merge does); the full list to write."""
        self.conditions[condition["type"]] = condition
        return list(self.conditions.values())


class Kueue:
    """Kueue's admission controller, emulated on kmock from the objects the chart rendered.

    It reads the LocalQueues, ClusterQueues and WorkloadPriorityClasses from the API server (apply
    the render first, :func:`tests.k8s._api.apply`), and for every suspended Job labelled with a
    queue it creates the Workload (owner reference, ``kueue.x-k8s.io/job-uid``, pod set from the
    Job, priority from the WorkloadPriorityClass). It admits pending Workloads of each
    ClusterQueue in priority, then creation order: ``StrictFIFO`` stops at the first that does not
    fit, ``BestEffortFIFO`` tries the ones behind it. Admission reserves nominal quota per flavor,
    writes ``QuotaReserved`` then ``Admitted`` and ``status.admission``, and unsuspends the Job.
    With ``preemption.withinClusterQueue: LowerPriority`` a Workload that does not fit evicts
    lower-priority admitted ones (``Evicted``/``Preempted``, reason ``InClusterQueue``), whose Jobs
    are suspended again, as Kueue's job reconciler does; :meth:`evict` evicts one on demand.
    A finished Job's Workload gets ``Finished`` and frees its quota; a deleted Job's Workload is
    deleted (the garbage collector's part).
    """

    def __init__(self, api: k8s.ApiClient, namespace: str, *, poll_s: float = 0.1, clock=utcnow) -> None:
        self.api, self.namespace, self.poll_s, self.clock = api, namespace, poll_s, clock
        self.workloads: dict[str, _Workload] = {}  # by Job name
        self.admitted: list[str] = []
        """Job names in the order they were admitted."""
        self.preempted: list[str] = []
        self._seq = itertools.count()
        self._loop = Loop(self.reconcile, "kueue-emulator", poll_s)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.stop()

    def _now(self) -> str:
        return self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- reading the queues ----------------------------------------------------------------
    def _objects(self, plural: str, namespaced: bool) -> list[dict[str, Any]]:
        custom = k8s.CustomObjectsApi(self.api)
        if namespaced:
            found = custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, self.namespace, plural)
        else:
            found = custom.list_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural)
        return found.get("items") or []

    def _read_queues(self) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, int]]:
        local = {q["metadata"]["name"]: q["spec"]["clusterQueue"] for q in self._objects("localqueues", True)}
        cluster = {q["metadata"]["name"]: q for q in self._objects("clusterqueues", False)}
        priorities = {p["metadata"]["name"]: int(p["value"]) for p in self._objects("workloadpriorityclasses", False)}
        return local, cluster, priorities

    # --- one pass, as Kueue's reconcilers and scheduler would make it -----------------------
    async def reconcile(self) -> None:
        local, cluster, priorities = await asyncio.to_thread(self._read_queues)
        jobs = {j["metadata"]["name"]: j for j in await asyncio.to_thread(list_jobs, self.api, self.namespace)}
        for name, job in jobs.items():
            await self._observe_job(name, job, priorities)
        for name in [n for n in self.workloads if n not in jobs]:
            await self._job_gone(name)
        for cq_name, cq in cluster.items():
            queues = {q for q, target in local.items() if target == cq_name}
            await self._schedule(cq, [w for w in self.workloads.values() if w.queue in queues])
        for workload in self.workloads.values():
            if workload.queue not in local and "QuotaReserved" not in workload.conditions:
                message = f"LocalQueue {workload.queue} doesn't exist"
                await self._write(workload, [cond("QuotaReserved", "Inadmissible", message, self._now(), "False")])

    async def _observe_job(self, name: str, job: dict[str, Any], priorities: dict[str, int]) -> None:
        labels = job["metadata"].get("labels") or {}
        queue = labels.get(LABEL_QUEUE)
        if not queue:
            return
        workload = self.workloads.get(name)
        if workload is None:
            if not (job.get("spec") or {}).get("suspend"):
                return  # Kueue manages Jobs created suspended; this one runs unmanaged
            await self._create_workload(name, job, queue, priorities)
            return
        conditions = {c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
        if not workload.finished and conditions & {"Complete", "Failed"}:
            workload.finished = True
            reason = "Succeeded" if "Complete" in conditions else "Failed"
            await self._write(workload, [cond("Finished", reason, f"Job finished: {reason}", self._now())])
            workload.assignment = None

    async def _create_workload(self, name: str, job: dict[str, Any], queue: str, priorities: dict[str, int]) -> None:
        meta = job["metadata"]
        if not meta.get("uid"):  # the API server's part: kmock assigns none
            meta["uid"] = str(uuid.uuid4())
            await patch_job(self.api, self.namespace, name, {"metadata": {"uid": meta["uid"]}})
        priority_class = (meta.get("labels") or {}).get(LABEL_PRIORITY_CLASS)
        priority = priorities.get(priority_class or "", 0)
        body = workload_for(
            job, priority_class=priority_class if priority_class in priorities else None, priority=priority
        )
        body["metadata"]["namespace"] = self.namespace
        await asyncio.to_thread(
            k8s.CustomObjectsApi(self.api).create_namespaced_custom_object,
            KUEUE_GROUP,
            KUEUE_VERSION,
            self.namespace,
            "workloads",
            body,
        )
        self.workloads[name] = _Workload(
            name=body["metadata"]["name"],
            job=name,
            job_uid=meta["uid"],
            queue=queue,
            priority=priority,
            seq=next(self._seq),
            requests=pod_set_requests(body["spec"]["podSets"]),
        )

    async def _job_gone(self, name: str) -> None:
        workload = self.workloads.pop(name)

        def delete() -> None:
            with contextlib.suppress(ApiException):
                k8s.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                    KUEUE_GROUP, KUEUE_VERSION, self.namespace, "workloads", workload.name
                )

        await asyncio.to_thread(delete)

    async def _schedule(self, cq: dict[str, Any], workloads: list[_Workload]) -> None:
        spec = cq.get("spec") or {}
        used: Usage = {}
        for workload in workloads:
            if workload.admitted:
                add(used, workload.assignment.usage)
        pending = sorted(
            (w for w in workloads if not w.admitted and not w.finished and "Evicted" not in w.conditions),
            key=lambda w: (-w.priority, w.seq),
        )
        for workload in pending:
            assignment = assign(cq, workload.requests, used)
            if assignment.fits:
                add(used, assignment.usage)
                await self._admit(workload, cq["metadata"]["name"], assignment)
                continue
            if (spec.get("preemption") or {}).get("withinClusterQueue") == "LowerPriority":
                victims = self._victims(cq, workload, [w for w in workloads if w.admitted], used)
                if victims:
                    for victim in victims:
                        add(used, victim.assignment.usage, -1)
                        await self._preempt(victim, workload)
                    continue  # admitted on a later pass, once the victims' quota is released
            if workload.conditions.get("QuotaReserved", {}).get("message") != assignment.reason:
                await self._write(workload, [cond("QuotaReserved", "Pending", assignment.reason, self._now(), "False")])
            if spec.get("queueingStrategy") == "StrictFIFO":
                return  # the head blocks everything behind it

    def _victims(
        self, cq: dict[str, Any], preemptor: _Workload, admitted: list[_Workload], used: Usage
    ) -> list[_Workload]:
        """Lowest priority first, the most recently admitted first among equals, until it fits."""
        candidates = sorted(
            (w for w in admitted if w.priority < preemptor.priority), key=lambda w: (w.priority, -w.seq)
        )
        remaining, chosen = dict(used), []
        for candidate in candidates:
            add(remaining, candidate.assignment.usage, -1)
            chosen.append(candidate)
            if assign(cq, preemptor.requests, remaining).fits:
                return chosen
        return []

    async def _admit(self, workload: _Workload, cq_name: str, assignment: Assignment) -> None:
        now = self._now()
        workload.cluster_queue, workload.assignment = cq_name, assignment
        for gone in ("Evicted", "Preempted", "Requeued"):
            workload.conditions.pop(gone, None)
        workload.set(cond("QuotaReserved", "QuotaReserved", f"Quota reserved in ClusterQueue {cq_name}", now))
        admission = {
            "clusterQueue": cq_name,
            "podSetAssignments": [
                {
                    "name": "main",
                    "count": 1,
                    "flavors": dict(assignment.flavors),
                    "resourceUsage": {r: quantity_text(q) for (_, r), q in assignment.usage.items()},
                }
            ],
        }
        await self._write(workload, [cond("Admitted", "Admitted", ADMITTED_MESSAGE, now)], admission=admission)
        await patch_job(self.api, self.namespace, workload.job, {"spec": {"suspend": False}})
        self.admitted.append(workload.job)

    async def _preempt(self, victim: _Workload, preemptor: _Workload) -> None:
        message = (
            f"Preempted to accommodate a workload (UID: {preemptor.name}, JobUID: {preemptor.job_uid})"
            " due to prioritization in the ClusterQueue"
        )
        await self._evict(victim, "Preempted", message, preempted="InClusterQueue")
        self.preempted.append(victim.job)  # once written: a test reading it sees the conditions

    async def evict(
        self, job: str, reason: str = "PodsReadyTimeout", message: str = "Exceeded the PodsReady timeout"
    ) -> None:
        """Evict the admitted Workload of Job ``job`` (e.g. ``PodsReadyTimeout``, ``Deactivated``)."""
        async with self._loop.lock:
            workload = self.workloads[job]
            if not workload.admitted:
                raise RuntimeError(f"the Workload of Job {job} is not admitted")
            await self._evict(workload, reason, message)

    async def _evict(self, workload: _Workload, reason: str, message: str, *, preempted: str | None = None) -> None:
        """Kueue's order: ``Evicted`` (+ ``Preempted``), quota released, then the Job suspended."""
        now = self._now()
        workload.set(cond("Evicted", reason, message, now))
        if preempted:
            workload.set(cond("Preempted", preempted, message, now))
        workload.set(cond("QuotaReserved", "Pending", message, now, "False"))
        workload.assignment = None
        await self._write(
            workload,
            [cond("Admitted", "NoReservation", "The workload has no reservation", now, "False")],
            admission=None,
        )
        with contextlib.suppress(ApiException):  # the Job is gone already: nothing to suspend
            await patch_job(self.api, self.namespace, workload.job, {"spec": {"suspend": True}})

    async def _write(self, workload: _Workload, conditions: list[dict[str, Any]], **status: Any) -> None:
        for condition in conditions:
            workload.set(condition)
        with contextlib.suppress(ApiException):  # deleted meanwhile: nothing left to tell
            await patch_workload(self.api, self.namespace, workload.name, list(workload.conditions.values()), **status)
