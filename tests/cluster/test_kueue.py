"""The emulated Kueue on the rendered chart's queues: Workloads, admission order, quota, preemption.

Jobs are the dispatcher's own (``build_job`` with the settings the rendered dispatcher Deployment
gets), created on kmock as the backend creates them; no pods run here (``run_pods=False``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client as k8s

from services.common.events import Priority
from services.dispatcher.backends.kubernetes import KUEUE_GROUP, KUEUE_VERSION
from services.dispatcher.backends.manifests import build_job
from tests.charts.conftest import validate
from tests.k8s._api import JOB_UID, patch_job_status
from tests.k8s.conftest import make_job

pytestmark = [pytest.mark.k8s]


async def _install(make_cluster, **values: Any):
    cluster = make_cluster()
    await cluster.install(values or None, run_pods=False)
    settings = await cluster.settings_of("dispatcher")
    return cluster, settings.kubernetes


async def _submit(cluster, k8s_settings, **job: Any) -> str:
    body = build_job(make_job(**job), k8s_settings)
    await asyncio.to_thread(k8s.BatchV1Api(cluster.api).create_namespaced_job, cluster.namespace, body)
    return body["metadata"]["name"]


async def _job(cluster, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(k8s.BatchV1Api(cluster.api).read_namespaced_job, name, cluster.namespace)


async def _workload(cluster, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(
        k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object,
        KUEUE_GROUP,
        KUEUE_VERSION,
        cluster.namespace,
        "workloads",
        cluster.kueue.workloads[name].name,
    )


def _conditions(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in workload["status"]["conditions"]}


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _admitted(cluster, name: str) -> bool:
    return name in cluster.kueue.admitted


async def _complete(cluster, name: str) -> None:
    status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    await patch_job_status(cluster.api, cluster.namespace, name, {"status": status})


async def test_a_job_gets_a_valid_owned_workload_and_is_admitted_and_unsuspended(make_cluster) -> None:
    cluster, settings = await _install(make_cluster)
    name = await _submit(cluster, settings, profile="mig-1g.5gb", priority=Priority.high)
    await _until(lambda: _admitted(cluster, name))
    job, workload = await _job(cluster, name), await _workload(cluster, name)
    validate(workload)  # against Kueue's v1beta2 Workload CRD, unknown fields refused
    assert job.spec.suspend is False
    assert workload["metadata"]["labels"][JOB_UID] == job.metadata.uid
    [owner] = workload["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", name, job.metadata.uid)
    assert workload["spec"]["queueName"] == "ks-kubescribe"
    assert workload["spec"]["priority"] == 1000  # the rendered WorkloadPriorityClass ks-kubescribe-high
    assert workload["spec"]["priorityClassRef"]["name"] == "ks-kubescribe-high"
    [pod_set] = workload["spec"]["podSets"]
    assert pod_set["count"] == 1
    assert pod_set["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == "1"
    conditions = _conditions(workload)
    assert list(conditions)[:2] == ["QuotaReserved", "Admitted"]
    assert conditions["QuotaReserved"]["reason"] == "QuotaReserved"
    assert conditions["QuotaReserved"]["message"] == "Quota reserved in ClusterQueue ks-kubescribe"
    assert conditions["Admitted"]["reason"] == "Admitted"
    [assignment] = workload["status"]["admission"]["podSetAssignments"]
    assert assignment["flavors"]["nvidia.com/mig-1g.5gb"] == "ks-kubescribe-default"
    assert assignment["resourceUsage"]["nvidia.com/mig-1g.5gb"] == "1"


async def test_quota_holds_the_second_job_until_the_first_finishes(make_cluster) -> None:
    cluster, settings = await _install(make_cluster, kueue={"clusterQueue": {"migProfiles": {"mig-1g.5gb": 1}}})
    first = await _submit(cluster, settings)
    await _until(lambda: _admitted(cluster, first))
    second = await _submit(cluster, settings)
    await _until(lambda: _pending_reason(cluster, second))
    assert (await _job(cluster, second)).spec.suspend is True
    message = _conditions(await _workload(cluster, second))["QuotaReserved"]["message"]
    assert "insufficient quota for nvidia.com/mig-1g.5gb" in message
    await _complete(cluster, first)
    await _until(lambda: _admitted(cluster, second))
    assert _conditions(await _workload(cluster, first))["Finished"]["reason"] == "Succeeded"


async def _pending_reason(cluster, name: str) -> bool:
    """The Workload on the API server says it has no quota reserved (and why)."""
    if name not in cluster.kueue.workloads:
        return False
    conditions = _conditions(await _workload(cluster, name))
    return conditions.get("QuotaReserved", {}).get("status") == "False"


async def test_a_profile_the_cluster_queue_does_not_cover_stays_inadmissible(make_cluster) -> None:
    cluster, settings = await _install(make_cluster)
    name = await _submit(cluster, settings, profile="mig-7g.80gb")
    await _until(lambda: _pending_reason(cluster, name))
    message = _conditions(await _workload(cluster, name))["QuotaReserved"]["message"]
    assert message.endswith("resource nvidia.com/mig-7g.80gb unavailable in ClusterQueue ks-kubescribe")
    assert (await _job(cluster, name)).spec.suspend is True


@pytest.mark.parametrize(("strategy", "small_admitted"), [("BestEffortFIFO", True), ("StrictFIFO", False)])
async def test_queueing_strategy_decides_whether_a_blocked_head_holds_the_rest(
    make_cluster, strategy: str, small_admitted: bool
) -> None:
    quotas = {"migProfiles": {"mig-1g.5gb": 2, "mig-3g.20gb": 1}, "queueingStrategy": strategy}
    cluster, settings = await _install(make_cluster, kueue={"clusterQueue": {**quotas, "withinClusterQueue": "Never"}})
    await cluster.kueue.aclose()  # queue all three before the first pass, so the order is the queue's
    running = await _submit(cluster, settings, profile="mig-3g.20gb", priority=Priority.low)
    await cluster.kueue.reconcile()
    head = await _submit(cluster, settings, profile="mig-3g.20gb", priority=Priority.high)
    small = await _submit(cluster, settings, profile="mig-1g.5gb", priority=Priority.normal)
    await cluster.kueue.reconcile()
    await cluster.kueue.reconcile()
    assert cluster.kueue.admitted[0] == running
    assert head not in cluster.kueue.admitted
    assert (small in cluster.kueue.admitted) is small_admitted


async def test_priority_orders_admission_of_jobs_queued_together(make_cluster) -> None:
    cluster, settings = await _install(make_cluster)
    await cluster.kueue.aclose()
    names = [await _submit(cluster, settings, priority=p) for p in (Priority.low, Priority.normal, Priority.high)]
    await cluster.kueue.reconcile()
    await cluster.kueue.reconcile()
    assert cluster.kueue.admitted == names[::-1]


async def test_a_higher_priority_job_preempts_a_lower_one_which_is_suspended_again(make_cluster) -> None:
    cluster, settings = await _install(make_cluster, kueue={"clusterQueue": {"migProfiles": {"mig-1g.5gb": 1}}})
    low = await _submit(cluster, settings, priority=Priority.low)
    await _until(lambda: _admitted(cluster, low))
    high = await _submit(cluster, settings, priority=Priority.high)

    async def preempted() -> bool:
        return low in cluster.kueue.preempted

    await _until(preempted)
    conditions = _conditions(await _workload(cluster, low))
    assert conditions["Evicted"]["reason"] == "Preempted"
    assert conditions["Preempted"]["reason"] == "InClusterQueue"
    assert conditions["Admitted"]["status"] == "False"
    assert (await _job(cluster, low)).spec.suspend is True
    await _until(lambda: _admitted(cluster, high))
    await asyncio.to_thread(k8s.BatchV1Api(cluster.api).delete_namespaced_job, low, cluster.namespace)

    async def gone() -> bool:
        return low not in cluster.kueue.workloads

    await _until(gone)


async def test_evict_on_demand_reports_the_reason_and_suspends_the_job(make_cluster) -> None:
    cluster, settings = await _install(make_cluster)
    name = await _submit(cluster, settings)
    await _until(lambda: _admitted(cluster, name))
    await cluster.kueue.evict(name)
    conditions = _conditions(await _workload(cluster, name))
    assert (conditions["Evicted"]["reason"], conditions["QuotaReserved"]["status"]) == ("PodsReadyTimeout", "False")
    assert (await _job(cluster, name)).spec.suspend is True
