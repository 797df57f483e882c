"""``KmockCluster``: Kueue and the Job controller, played on kmock for the dispatcher suite.

It is a :class:`~services.dispatcher.backends.fake.FakeCluster` whose state changes are made
real on the emulator instead of being emitted: it polls the namespace for the Jobs the
``KubernetesJobBackend`` creates, queues them by priority on its slots (Kueue's part), and for
each admitted one creates an Admitted Workload, unsuspends the Job and patches its status as the
script says; the backend under test sees nothing but the Kubernetes API. The transcriber's work
runs in-process, reading the spec by the Job's job-id label, as the pod would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from kubernetes import client as k8s
from nats.js import JetStreamContext

from services.dispatcher.backends.fake import FakeCluster, FakeRun, Handler, Runner
from services.dispatcher.backends.manifests import LABEL_JOB_ID, job_name
from services.dispatcher.domain import JobState
from services.dispatcher.jobs_store import JobStore
from tests.k8s._api import cond, create_workload, patch_job, patch_job_status, patch_workload


class KmockCluster(FakeCluster):
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
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="kmock-cluster")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await super().aclose()

    async def _poll(self) -> None:
        """Pick up new Jobs (what the Kueue controller's watch does)."""
        store = await JobStore.open(self.js)
        while True:
            for item in await asyncio.to_thread(self._list):
                job_id = ((item.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB_ID)
                if job_id and job_id not in self.runs:
                    spec = await store.get(job_id)
                    if spec is not None:
                        await self.enqueue(spec)
            await asyncio.sleep(0.1)

    def _list(self) -> list[dict[str, Any]]:
        response = k8s.BatchV1Api(self.api).list_namespaced_job(self.namespace, _preload_content=False)
        return [i for i in json.loads(response.data).get("items") or [] if not i["metadata"].get("deletionTimestamp")]

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
