"""Kueue-managed batch/v1 Jobs on DAS slices: the ``kubernetes`` job backend.

One Job per planned job, built by :func:`~services.dispatcher.backends.manifests.build_job` and
created suspended with ``kueue.x-k8s.io/queue-name``; Kueue admits it against the ClusterQueue's
quotas and DAS hands out the MIG slice. The backend then watches the Jobs and their Kueue
Workloads and reports :class:`JobEvent` s::

    queued ──► admitted ──► running ──► succeeded | failed
       └───────────┴────────────┴─────► evicted  (Workload Evicted/Preempted: the Job is deleted,
                                                   the dispatcher requeues its recordings)

The official ``kubernetes`` client is synchronous, so API calls run in worker threads and each
watched resource has one thread running a layered loop (as kopf's ``watching.py`` does):
reconnect forever → list, then watch from the list's ``resourceVersion`` (relist on 410 Gone) →
one watch request. ``_iterations`` bounds the outer loop for tests.

Errors (``PermanentError`` / ``TemporaryError`` from :mod:`services.common.errors`)::

    KubernetesApiError(PermanentError)   403 Forbidden, 422 Invalid, ...: names the API's reason
    TemporaryError                       429, 5xx, connection failures: try again later
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from services.common.errors import ConfigurationError, PermanentError, TemporaryError
from services.common.events import utcnow
from services.common.settings import KubernetesSettings, Settings
from services.dispatcher.backends.manifests import LABEL_JOB_ID, build_job, job_name, label_selector, selector_labels
from services.dispatcher.domain import TERMINAL_STATES, JobEvent, JobState, TranscriptionJob, register_backend

logger = logging.getLogger(__name__)

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
WORKLOADS = "workloads"
LABEL_JOB_UID = "kueue.x-k8s.io/job-uid"

_RANK = {JobState.queued: 0, JobState.admitted: 1, JobState.running: 2}
_TERMINAL_RANK = 3
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_FINISHED_MEMORY = 10_000
"""How many finished job ids to remember, so replayed watch events never re-report them."""


class KubernetesApiError(PermanentError):
    """The API server refused a request (403, 422, ...); the message carries the API's reason."""

    def __init__(self, message: str, *, status: int | None, reason: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _api_error(exc: ApiException, doing: str) -> PermanentError | TemporaryError:
    """Translate an ``ApiException`` at the boundary, naming what failed and the API's reason."""
    reason = exc.reason
    message = ""
    with contextlib.suppress(TypeError, ValueError):
        body = json.loads(exc.body or "")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    text = f"Kubernetes API refused to {doing}: HTTP {exc.status} {reason}"
    if message:
        text += f": {message}"
    if exc.status in _TRANSIENT_STATUSES or exc.status == 0:
        return TemporaryError(text, delay=2.0)
    if exc.status == 403:
        text += " (the dispatcher's Role must allow it: see charts/kubescribe/templates/rbac.yaml)"
    return KubernetesApiError(text, status=exc.status, reason=reason)


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's conditions whose status is True, by type."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True" and "type" in c}


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _describe(condition: dict[str, Any]) -> str:
    parts = [p for p in (condition.get("reason"), condition.get("message")) if p]
    return ": ".join(parts) or condition.get("type", "")


@dataclass(frozen=True)
class Observation:
    """What the cluster says about one job right now."""

    state: JobState
    at: datetime | None = None
    reason: str | None = None
    exit_code: int | None = None


def observe(job: dict[str, Any], workload: dict[str, Any] | None) -> Observation:
    """The state of a job from its Job and (optional) Kueue Workload objects.

    The Job's own conditions are authoritative for the outcome; the Workload tells admission
    and eviction, which the Job alone cannot (an evicted Job is merely suspended again).
    """
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    job_conditions = _conditions(job)
    if "Complete" in job_conditions:
        cond = job_conditions["Complete"]
        return Observation(
            JobState.succeeded, _time(status.get("completionTime") or cond.get("lastTransitionTime")), exit_code=0
        )
    if "Failed" in job_conditions:
        cond = job_conditions["Failed"]
        return Observation(JobState.failed, _time(cond.get("lastTransitionTime")), reason=_describe(cond))
    wl_conditions = _conditions(workload) if workload else {}
    if "Finished" not in wl_conditions:
        for kind in ("Preempted", "Evicted"):
            if kind in wl_conditions:
                cond = wl_conditions[kind]
                return Observation(
                    JobState.evicted, _time(cond.get("lastTransitionTime")), reason=f"{kind}: {_describe(cond)}"
                )
    # ``ready`` counts pods whose containers run (a pod waiting for its DAS slice is only
    # ``active``); API servers before 1.24 report no ``ready``, so fall back to ``active`` there.
    ready = status.get("ready")
    started = ready > 0 if ready is not None else bool(status.get("active"))
    if not spec.get("suspend") and started:
        return Observation(JobState.running, _time(status.get("startTime")))
    if "Admitted" in wl_conditions:
        cond = wl_conditions["Admitted"]
        return Observation(JobState.admitted, _time(cond.get("lastTransitionTime")), reason=_describe(cond))
    if spec.get("suspend") is False:
        # Kueue unsuspends a Job when it admits it; without a Workload that is our only sign.
        return Observation(JobState.admitted, _time(status.get("startTime")))
    return Observation(JobState.queued, _time((job.get("metadata") or {}).get("creationTimestamp")))


def _rank(state: JobState) -> int:
    return _TERMINAL_RANK if state in TERMINAL_STATES else _RANK[state]


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


@dataclass
class _Resource:
    """A watched resource: how to list/watch it in a thread."""

    kind: str
    call: Callable[..., Any]
    args: tuple[Any, ...]
    selector: str | None
    iterations: int | None
    thread: threading.Thread | None = None
    response: Any = None
    not_found_logged: bool = field(default=False)


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


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


@register_backend("kubernetes")
class KubernetesJobBackend:
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
        self._out: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        self._raw: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: asyncio.Task[None] | None = None
        self._resources: list[_Resource] = []
        self._closed = False
        self._synced = asyncio.Event()

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
                raise _api_error(exc, f"create Job {name} in namespace {namespace}") from exc
            created, adopted = await self._adopt(name, job.job_id), True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"cannot reach the Kubernetes API to create Job {name}: {exc}", delay=2.0) from exc
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
        return self._events()

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
            raise _api_error(exc, f"list Jobs in namespace {namespace}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"cannot reach the Kubernetes API to list Jobs: {exc}", delay=2.0) from exc
        ids = []
        for item in items:
            meta = item.get("metadata") or {}
            if meta.get("deletionTimestamp") or {"Complete", "Failed"} & set(_conditions(item)):
                continue
            job_id = (meta.get("labels") or {}).get(LABEL_JOB_ID)
            if job_id:
                ids.append(job_id)
        return sorted(ids)

    async def aclose(self) -> None:
        """Stop the watch threads and the event stream; close the API client if we made it."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        for resource in self._resources:
            with contextlib.suppress(Exception):
                if resource.response is not None:
                    resource.response.shutdown()
        threads = [r.thread for r in self._resources if r.thread is not None]
        for thread in threads:
            await asyncio.to_thread(thread.join, 5.0)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._out.put_nowait(None)
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
            raise _api_error(exc, f"read existing Job {name}") from exc
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
                raise _api_error(exc, f"delete Job {name} in namespace {namespace}") from exc

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
            _Resource("Job", self._batch.list_namespaced_job, (namespace,), self._selector, self._iterations),
        ]
        if self.settings.use_kueue:
            self._resources.append(
                _Resource(
                    "Workload",
                    self._custom.list_namespaced_custom_object,
                    (KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS),
                    None,
                    self._iterations,
                )
            )
        for resource in self._resources:
            resource.thread = threading.Thread(
                target=self._watch_forever, args=(resource,), name=f"kubescribe-watch-{resource.kind}", daemon=True
            )
            resource.thread.start()
        self._pump = asyncio.create_task(self._process(), name="kubescribe-k8s-events")

    async def _events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self._out.get()
            if event is None:
                return
            yield event

    def _emit(self, kind: str, kind_of_event: str, obj: dict[str, Any]) -> None:
        """Hand a raw event from a watch thread to the event loop."""
        if self._loop is not None and not self._stopping.is_set():
            self._loop.call_soon_threadsafe(self._raw.put_nowait, (kind, kind_of_event, obj))

    def _watch_forever(self, resource: _Resource) -> None:
        """Layer 1: reconnect forever (or ``_iterations`` times), backing off on errors."""
        iterations = resource.iterations
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._list_and_watch(resource)
                delay = 0.5
            except ApiException as exc:
                if exc.status == 404 and resource.kind == "Workload":
                    if not resource.not_found_logged:
                        logger.warning(
                            "Kueue Workloads (%s/%s) are not served: is Kueue installed?", KUEUE_GROUP, KUEUE_VERSION
                        )
                        resource.not_found_logged = True
                    delay = 30.0
                else:
                    logger.warning("watching %ss failed: %s", resource.kind, _api_error(exc, f"watch {resource.kind}s"))
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # connection drops, timeouts, malformed streams: reconnect
                if self._stopping.is_set():
                    break
                logger.debug("watch of %ss interrupted (%s); reconnecting", resource.kind, exc)
                delay = min(delay * 2, 30.0)
            if iterations is not None:
                iterations -= 1
                if iterations <= 0:
                    break
            self._stopping.wait(delay)
        logger.debug("watch of %ss stopped", resource.kind)

    def _list_and_watch(self, resource: _Resource) -> None:
        """Layer 2: list, then watch from the list's resourceVersion; relist on 410 Gone."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if resource.selector:
            kwargs["label_selector"] = resource.selector
        started = time.monotonic()
        response = resource.call(*resource.args, **kwargs)
        listing = json.loads(response.data)
        for item in listing.get("items") or []:
            self._emit(resource.kind, "LISTED", item)
        self._emit(resource.kind, "SYNCED", {"items": listing.get("items") or [], "started": started})
        version = (listing.get("metadata") or {}).get("resourceVersion")
        while not self._stopping.is_set():
            try:
                version = self._watch_once(resource, version)
            except _Gone:
                logger.debug("watch of %ss expired (410); relisting", resource.kind)
                return

    def _watch_once(self, resource: _Resource, version: str | None) -> str | None:
        """Layer 3: one watch request; returns the resourceVersion to resume from."""
        timeout = self.settings.watch_timeout_s
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
            # A little longer than the server's timeout: a silent connection is dead, reconnect.
            "_request_timeout": (10, timeout + min(5, timeout)),
        }
        if resource.selector:
            kwargs["label_selector"] = resource.selector
        if version:
            kwargs["resource_version"] = version
        response = resource.call(*resource.args, **kwargs)
        resource.response = response
        try:
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event, obj = event.get("type"), event.get("object") or {}
                if kind_of_event == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("reason"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind_of_event != "BOOKMARK":
                    self._emit(resource.kind, kind_of_event, obj)
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            if self._stopping.is_set():
                return version
            logger.debug("watch of %ss idle for %ss; resuming", resource.kind, timeout)
        finally:
            resource.response = None
            with contextlib.suppress(Exception):
                response.release_conn()
        return version

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
        new_rank = _rank(observation.state)
        if tracked.reported is not None:
            old_rank = _rank(tracked.reported)
            if new_rank <= old_rank:
                return False
            # A running or succeeded Job was admitted (and ran) even if a watch missed it; a failed
            # or evicted one may never have started, so nothing is inferred for those.
            if observation.state in (JobState.running, JobState.succeeded):
                for state, rank in _RANK.items():
                    if old_rank < rank < new_rank and state is not JobState.queued:
                        self._put(tracked, Observation(state, observation.at, reason="inferred"))
        tracked.reported = observation.state
        self._put(tracked, observation)
        if observation.state in TERMINAL_STATES and observation.state is not JobState.evicted:
            self._forget(tracked)
        return True

    def _put(self, tracked: _Tracked, observation: Observation) -> None:
        event = JobEvent(
            job_id=tracked.job_id,
            state=observation.state,
            at=observation.at or utcnow(),
            reason=observation.reason,
            exit_code=observation.exit_code,
        )
        logger.debug("job %s is %s", tracked.job_id, event.state, extra={"job_id": tracked.job_id})
        self._out.put_nowait(event)

    def _forget(self, tracked: _Tracked) -> None:
        self._tracked.pop(tracked.name, None)
        self._finished[tracked.name] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
