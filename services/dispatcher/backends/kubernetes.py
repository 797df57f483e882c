"""``KubernetesJobBackend``: Kueue-managed batch/v1 Jobs on DAS slices (the ``kubernetes`` backend).

One Job per planned job, built by :func:`~services.dispatcher.backends.manifests.build_job` and
created suspended with ``kueue.x-k8s.io/queue-name``; Kueue admits it against the ClusterQueue's
quotas and DAS hands out the MIG slice. The backend watches the Jobs and their Kueue Workloads
and reports :class:`JobEvent` s::

    queued ──► admitted ──► running ──► succeeded | failed
       └───────────┴────────────┴─────► evicted  (Workload Evicted/Preempted: the Job is deleted,
                                                   the dispatcher requeues its recordings)

Split along its seams:

- :mod:`._k8s_errors`: API errors translated at the boundary (``KubernetesApiError``, a
  ``PermanentError``; transient failures are ``TemporaryError``).
- :mod:`._k8s_observe`: the pure rules from Job + Workload objects to a :class:`JobState`.
- :mod:`._k8s_watch`: the threaded list-and-watch layers (the official client is synchronous).
- here: submitting, adopting, cancelling, and turning raw watch events into reports. Raw events
  cross into the event loop through one queue, so all tracking state is touched by one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from services.common.errors import ConfigurationError, PermanentError
from services.common.events import utcnow
from services.common.settings import KubernetesSettings, Settings
from services.dispatcher.backends._k8s_errors import KubernetesApiError, api_error, unreachable
from services.dispatcher.backends._k8s_observe import Observation, is_finished, observe, rank, skipped
from services.dispatcher.backends._k8s_watch import Resource, Watcher
from services.dispatcher.backends.base import JobBackend
from services.dispatcher.backends.manifests import LABEL_JOB_ID, build_job, job_name, label_selector, selector_labels
from services.dispatcher.domain import TERMINAL_STATES, JobEvent, JobState, TranscriptionJob

__all__ = ["KUEUE_GROUP", "KUEUE_VERSION", "KubernetesApiError", "KubernetesJobBackend", "Observation", "observe"]

logger = logging.getLogger(__name__)

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
WORKLOADS = "workloads"
LABEL_JOB_UID = "kueue.x-k8s.io/job-uid"

_FINISHED_MEMORY = 10_000
"""How many finished job ids to remember, so replayed watch events never re-report them."""


@dataclass
class _Tracked:
    """One live job: its latest Job object and what has been reported so far."""

    job_id: str
    name: str
    uid: str | None = None
    job: dict[str, Any] | None = None
    reported: JobState | None = None
    cancelled: bool = False
    updated: float = 0.0
    """``time.monotonic()`` of the latest Job object: a relist started later that lacks it means deleted."""


def _load_api_client() -> k8s.ApiClient:
    """In-cluster config in a pod, else KUBECONFIG: the dispatcher runs either way."""
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config()
        else:
            k8s_config.load_kube_config()
    except (k8s_config.ConfigException, OSError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot configure the Kubernetes client ({exc}); run in a pod with a ServiceAccount or set"
            " KUBECONFIG, or use KUBESCRIBE_BACKEND=local"
        ) from exc
    return k8s.ApiClient()


class KubernetesJobBackend(JobBackend):
    """Runs transcription jobs as Kueue-managed batch/v1 Jobs (see the module docstring)."""

    kind: ClassVar[str] = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings | Settings | None = None,
        *,
        api_client: k8s.ApiClient | None = None,
        extra_labels: dict[str, str] | None = None,
        _iterations: int | None = None,
        **_options: object,
    ) -> None:
        super().__init__()
        if isinstance(settings, Settings):
            settings = settings.kubernetes
        self.settings: KubernetesSettings = settings or KubernetesSettings()
        self._owns_client = api_client is None
        self._api = api_client or _load_api_client()
        self._batch = k8s.BatchV1Api(self._api)
        self._custom = k8s.CustomObjectsApi(self._api)
        self._extra_labels = dict(extra_labels or {})
        self._selector = label_selector(self.settings)
        self._iterations = _iterations
        self._tracked: dict[str, _Tracked] = {}  # by Job name
        self._finished: OrderedDict[str, None] = OrderedDict()  # Job names already reported terminal
        self._workloads: dict[str, dict[str, Any]] = {}  # Workload name -> object
        self._raw: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watcher: Watcher | None = None
        self._resources: list[Resource] = []
        self._closed = False
        self._synced = asyncio.Event()

    @property
    def api_client(self) -> k8s.ApiClient:
        """The client this backend talks through (the dispatcher's start-up checks read Kueue with it)."""
        return self._api

    # ---- JobBackend protocol -------------------------------------------------------------------

    async def submit(self, job: TranscriptionJob) -> None:
        """Create the Job; a 409 AlreadyExists means a previous attempt did, and is adopted."""
        try:
            body = build_job(job, self.settings, extra_labels=self._extra_labels)
        except ValueError as exc:
            raise PermanentError(f"cannot build the Job of job {job.job_id}: {exc}") from exc
        name = body["metadata"]["name"]
        namespace = self.settings.namespace
        adopted = False
        try:
            created = await asyncio.to_thread(self._create, namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise api_error(exc, f"create Job {name} in namespace {namespace}") from exc
            created, adopted = await self._adopt(name, job.job_id), True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unreachable(exc, f"create Job {name}") from exc
        self._finished.pop(name, None)  # a deliberate (re)submit wants to hear how it ends, again
        tracked = self._track(name, job.job_id, created)
        if tracked.reported is None:
            self._report(tracked, Observation(JobState.queued, utcnow()))
        if adopted:
            # The adopted Job may be far along, or finished already: report where it is now.
            await self._evaluate(tracked)

    def watch(self) -> AsyncIterator[JobEvent]:
        """State changes of every Job of this release, adopted ones included, until ``aclose``."""
        self._start()
        return super().watch()

    async def synced(self, timeout: float = 30.0) -> None:
        """Wait until the watch has listed the cluster's Jobs once (adopted jobs are then known)."""
        self._start()
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def cancel(self, job_id: str) -> None:
        """Delete the Job (and its pods); unknown or already deleted Jobs are ignored."""
        name = job_name(job_id)
        if name in self._tracked:
            self._tracked[name].cancelled = True
        await self._delete(name)

    async def active(self) -> list[str]:
        """Ids of this release's Jobs that have not finished, listed by label from the cluster."""
        namespace = self.settings.namespace
        try:
            items = await asyncio.to_thread(self._list_jobs)
        except ApiException as exc:
            raise api_error(exc, f"list Jobs in namespace {namespace}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unreachable(exc, "list Jobs") from exc
        labels = [((item.get("metadata") or {}).get("labels") or {}) for item in items if not is_finished(item)]
        return sorted(job_id for job_id in (label.get(LABEL_JOB_ID) for label in labels) if job_id)

    async def aclose(self) -> None:
        """Stop the watch threads and the event stream; close the API client if we made it."""
        if self._closed:
            return
        self._closed = True
        threads = self._watcher.stop() if self._watcher is not None else []
        for thread in threads:
            await asyncio.to_thread(thread.join, 5.0)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._close_stream()
        if self._owns_client:
            await asyncio.to_thread(self._api.close)

    # ---- API calls (run in threads) ------------------------------------------------------------

    def _create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._batch.create_namespaced_job(namespace, body, _preload_content=False)
        return json.loads(response.data)

    def _read(self, name: str) -> dict[str, Any]:
        response = self._batch.read_namespaced_job(name, self.settings.namespace, _preload_content=False)
        return json.loads(response.data)

    def _list_jobs(self) -> list[dict[str, Any]]:
        response = self._batch.list_namespaced_job(
            self.settings.namespace, label_selector=self._selector, _preload_content=False
        )
        items = json.loads(response.data).get("items") or []
        return [item for item in items if self._is_ours(item)]

    async def _adopt(self, name: str, job_id: str) -> dict[str, Any]:
        """The existing Job of a retried submit; refuse one that merely shares the name."""
        try:
            existing = await asyncio.to_thread(self._read, name)
        except ApiException as exc:
            raise api_error(exc, f"read existing Job {name}") from exc
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_JOB_ID) != job_id:
            raise PermanentError(
                f"Job {name} already exists in namespace {self.settings.namespace} but belongs to job"
                f" {labels.get(LABEL_JOB_ID)!r}, not {job_id!r}; delete it or use another namespace"
            )
        logger.debug("adopted existing Job %s", name, extra={"job_id": job_id})
        return existing

    async def _delete(self, name: str) -> None:
        namespace = self.settings.namespace

        def call() -> None:
            self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background")

        try:
            await asyncio.to_thread(call)
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(exc, f"delete Job {name} in namespace {namespace}") from exc

    def _is_ours(self, job: dict[str, Any]) -> bool:
        """Client-side check of the label selector (a server may not filter, e.g. a test emulator)."""
        labels = (job.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in selector_labels(self.settings).items())

    # ---- watching ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._pump is not None or self._closed:
            return
        self._loop = asyncio.get_running_loop()
        namespace = self.settings.namespace
        self._resources = [
            Resource("Job", self._batch.list_namespaced_job, (namespace,), self._selector, self._iterations),
        ]
        if self.settings.use_kueue:
            self._resources.append(
                Resource(
                    "Workload",
                    self._custom.list_namespaced_custom_object,
                    (KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS),
                    None,
                    self._iterations,
                    not_found_hint=f"Kueue Workloads ({KUEUE_GROUP}/{KUEUE_VERSION}) are not served: is Kueue"
                    " installed?",
                )
            )
        self._watcher = Watcher(self._resources, self._hand_over, watch_timeout_s=self.settings.watch_timeout_s)
        self._watcher.start()
        self._pump = asyncio.create_task(self._process(), name="kubescribe-k8s-events")

    def _hand_over(self, kind: str, kind_of_event: str, obj: dict[str, Any]) -> None:
        """Hand a raw event from a watch thread to the event loop."""
        stopping = self._watcher is None or self._watcher.stopping.is_set()
        if self._loop is not None and not stopping:
            self._loop.call_soon_threadsafe(self._raw.put_nowait, (kind, kind_of_event, obj))

    # ---- from raw events to JobEvents (event loop) ---------------------------------------------

    async def _process(self) -> None:
        while True:
            kind, kind_of_event, obj = await self._raw.get()
            try:
                if kind == "Job":
                    await self._on_job(kind_of_event, obj)
                else:
                    await self._on_workload(kind_of_event, obj)
            except Exception:  # one odd object must not stop the stream
                logger.exception("cannot process %s %s event", kind, kind_of_event)

    def _track(self, name: str, job_id: str, obj: dict[str, Any] | None) -> _Tracked:
        tracked = self._tracked.get(name)
        if tracked is None:
            tracked = self._tracked[name] = _Tracked(job_id=job_id, name=name)
        if obj is not None:
            tracked.job = obj
            tracked.updated = time.monotonic()
            tracked.uid = (obj.get("metadata") or {}).get("uid") or tracked.uid
        return tracked

    async def _on_job(self, kind_of_event: str, obj: dict[str, Any]) -> None:
        if kind_of_event == "SYNCED":
            listed = {(item.get("metadata") or {}).get("name") for item in obj["items"] if self._is_ours(item)}
            for name, tracked in list(self._tracked.items()):
                # Only Jobs seen before the listing began: one created meanwhile is simply not in it.
                if name not in listed and tracked.job is not None and tracked.updated < obj["started"]:
                    await self._on_vanished(tracked)
            self._synced.set()
            return
        if not self._is_ours(obj):
            return
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if name in self._finished:
            return
        job_id = (meta.get("labels") or {}).get(LABEL_JOB_ID) or name
        if kind_of_event == "DELETED":
            tracked = self._tracked.get(name)
            if tracked is not None:
                await self._on_vanished(tracked)
            return
        tracked = self._track(name, job_id, obj)
        await self._evaluate(tracked)

    async def _on_vanished(self, tracked: _Tracked) -> None:
        """A Job deleted behind our back fails; one we cancelled or evicted just goes away."""
        if not tracked.cancelled:
            self._report(tracked, Observation(JobState.failed, utcnow(), reason="Job was deleted before it finished"))
        self._forget(tracked)

    async def _on_workload(self, kind_of_event: str, obj: dict[str, Any]) -> None:
        if kind_of_event == "SYNCED":
            return
        name = (obj.get("metadata") or {}).get("name", "")
        if kind_of_event == "DELETED":
            self._workloads.pop(name, None)
            return
        self._workloads[name] = obj
        tracked = self._owner_of(obj)
        if tracked is not None:
            await self._evaluate(tracked)

    def _owner_of(self, workload: dict[str, Any]) -> _Tracked | None:
        """The tracked Job a Workload belongs to: by ownerReference, else by the job-uid label."""
        meta = workload.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "Job" and ref.get("name") in self._tracked:
                return self._tracked[ref["name"]]
        uid = (meta.get("labels") or {}).get(LABEL_JOB_UID)
        if uid:
            for tracked in self._tracked.values():
                if tracked.uid == uid:
                    return tracked
        return None

    def _workload_of(self, tracked: _Tracked) -> dict[str, Any] | None:
        for workload in self._workloads.values():
            if self._owner_of(workload) is tracked:
                return workload
        return None

    async def _evaluate(self, tracked: _Tracked) -> None:
        if tracked.job is None:
            return
        observation = observe(tracked.job, self._workload_of(tracked))
        if self._report(tracked, observation) and observation.state is JobState.evicted:
            # Kueue would requeue the suspended Job by itself; the dispatcher requeues the
            # recordings instead, so the old Job must go or the work could run twice.
            tracked.cancelled = True
            await self._delete(tracked.name)

    def _report(self, tracked: _Tracked, observation: Observation) -> bool:
        """Emit the new state, filling skipped steps so every consumer sees them in order."""
        if tracked.reported is not None:
            if rank(observation.state) <= rank(tracked.reported):
                return False
            # A running or succeeded Job was admitted (and ran) even if a watch missed it; a failed
            # or evicted one may never have started, so nothing is inferred for those.
            if observation.state in (JobState.running, JobState.succeeded):
                for state in skipped(tracked.reported, observation.state):
                    self._put(tracked, Observation(state, observation.at, reason="inferred"))
        tracked.reported = observation.state
        self._put(tracked, observation)
        if observation.state in TERMINAL_STATES and observation.state is not JobState.evicted:
            self._forget(tracked)
        return True

    def _put(self, tracked: _Tracked, observation: Observation) -> None:
        self._emit(
            tracked.job_id,
            observation.state,
            at=observation.at or utcnow(),
            reason=observation.reason,
            exit_code=observation.exit_code,
        )
        logger.debug("job %s is %s", tracked.job_id, observation.state, extra={"job_id": tracked.job_id})

    def _forget(self, tracked: _Tracked) -> None:
        self._tracked.pop(tracked.name, None)
        self._finished[tracked.name] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
