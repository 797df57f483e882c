"""The batch/v1 Job of a transcription job: the single source of truth for its shape.

:func:`build_job` is pure (a dict in, a dict out, no API calls), so tests can validate the
manifest against the Kubernetes schema and the Helm chart never carries a Job template: the
chart passes settings (``KUBESCRIBE_KUBERNETES_*``) and the dispatcher builds the Job here.

What the shape encodes, and why:

- ``kueue.x-k8s.io/queue-name`` + ``spec.suspend: true``: Kueue manages the Job and nothing
  starts before admission against the ClusterQueue's quotas (``use_kueue=False`` is for
  clusters without Kueue: no queue label, not suspended).
- ``kueue.x-k8s.io/priority-class``: a WorkloadPriorityClass per kubescribe priority.
- ``nvidia.com/mig-<profile>: 1``: DAS creates the MIG slice on demand; CPU jobs ask for cpu/memory.
- A name derived from the job id: a retried create hits AlreadyExists instead of duplicating.
- Non-root, read-only root filesystem, a writable emptyDir ``/tmp`` (size-limited, counted as
  ephemeral storage) for audio and caches; ``openshift`` omits the fixed UIDs restricted-v2 rejects.
- ``podFailurePolicy``: disruptions (drain, preemption, eviction) are ignored, a transcriber that
  exits non-zero fails the Job at once (the dispatcher owns retries and counts attempts), and
  ``backoffLimit`` only re-runs pods that never started (e.g. DAS's ``UnexpectedAdmissionError``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from services.common.settings import KubernetesSettings
from services.dispatcher.domain import TranscriptionJob

JOB_NAME_PREFIX = "kubescribe-transcribe-"
APP_NAME = "kubescribe"
COMPONENT = "transcriber"
MANAGED_BY = "kubescribe-dispatcher"

LABEL_JOB_ID = "kubescribe.dev/job-id"
LABEL_RECORDINGS = "kubescribe.dev/recordings"
LABEL_TENANT = "kubescribe.dev/tenant"
LABEL_PRIORITY = "kubescribe.dev/priority"
LABEL_PROFILE = "kubescribe.dev/profile"
LABEL_ATTEMPT = "kubescribe.dev/attempt"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
LABEL_PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"
ANNOTATION_MODEL = "kubescribe.dev/model"
ANNOTATION_RECORDING_IDS = "kubescribe.dev/recording-ids"
ANNOTATION_AUDIO_SECONDS = "kubescribe.dev/audio-seconds"
ANNOTATION_TRACEPARENT = "kubescribe.dev/traceparent"

CPU_PROFILE = "cpu"
MIG_RESOURCE_PREFIX = "nvidia.com/"
RUN_AS_USER = 10001
"""The image's non-root user (see the Dockerfile)."""

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_MIG_PROFILE = re.compile(r"^mig-[0-9][0-9a-z.+-]*[0-9a-z]$")


def job_name(job_id: str) -> str:
    """The Job's name for ``job_id``: a DNS-1123 label, stable for the same id (63 chars max)."""
    slug = _DNS_LABEL.sub("-", job_id.lower()).strip("-")
    name = f"{JOB_NAME_PREFIX}{slug}"
    if len(name) <= 63 and slug == job_id:
        return name
    # Lossy slug or too long: add a hash of the original id so two ids never share a name.
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:10]
    return f"{name[: 63 - 11].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a valid label value (63 chars, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", value)[:63]
    return cleaned.strip("-_.") or "none"


def selector_labels(settings: KubernetesSettings) -> dict[str, str]:
    """Labels that identify every Job this dispatcher (release) owns: used to list, watch and adopt."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": label_value(settings.instance),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def label_selector(settings: KubernetesSettings) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(settings).items())


def queue_for(job: TranscriptionJob, settings: KubernetesSettings) -> str:
    """The LocalQueue of the job's tenant (per-tenant queues are optional)."""
    return settings.tenant_queues.get(job.tenant, settings.kueue_queue)


def uses_mig(profile: str, settings: KubernetesSettings) -> bool:
    """Whether the job asks DAS for a MIG slice; validates the profile name either way."""
    if profile == CPU_PROFILE:
        return False
    if not _MIG_PROFILE.match(profile):
        raise ValueError(
            f"invalid resource profile {profile!r}: expected 'cpu' or a DAS MIG profile such as"
            " 'mig-1g.5gb' (see KUBESCRIBE_DISPATCHER_PROFILES)"
        )
    return settings.use_das


def resources_for(profile: str, settings: KubernetesSettings) -> dict[str, dict[str, str]]:
    """Container resources: one MIG slice (DAS) or a CPU/memory box."""
    if uses_mig(profile, settings):
        return {
            "requests": {"cpu": settings.gpu_cpu, "memory": settings.gpu_memory},
            "limits": {"memory": settings.gpu_memory, f"{MIG_RESOURCE_PREFIX}{profile}": "1"},
        }
    return {
        "requests": {"cpu": settings.cpu, "memory": settings.memory},
        "limits": {"cpu": settings.cpu, "memory": settings.memory},
    }


def _with_storage(resources: dict[str, dict[str, str]], settings: KubernetesSettings) -> dict[str, dict[str, str]]:
    """``resources`` plus the ephemeral storage /tmp uses, so the scheduler places the pod on a node with room."""
    resources["requests"]["ephemeral-storage"] = settings.ephemeral_storage_request
    resources["limits"]["ephemeral-storage"] = settings.ephemeral_storage_limit
    return resources


def security_contexts(settings: KubernetesSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: fixed UIDs unless OpenShift assigns its own."""
    ids = {} if settings.openshift else {"runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER}
    pod = {"runAsNonRoot": True, **ids, "seccompProfile": {"type": "RuntimeDefault"}}
    if not settings.openshift:
        pod["fsGroup"] = RUN_AS_USER
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        **ids,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": COMPONENT, "operator": "NotIn", "values": [0]}},
    ]
}
"""Disruptions do not count; a transcriber's own failure goes straight back to the dispatcher."""


def build_job(
    job: TranscriptionJob,
    settings: KubernetesSettings,
    *,
    extra_labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs ``python -m services.transcriber --job <id>`` for ``job``.

    ``extra_labels`` are added to the Job (tests use a ``created-by`` label); ``owner`` is an
    optional ownerReference (e.g. the dispatcher Deployment) so uninstalling the release
    garbage-collects its Jobs.
    """
    gpu = uses_mig(job.profile, settings)
    labels = {
        **selector_labels(settings),
        "app.kubernetes.io/part-of": APP_NAME,
        LABEL_JOB_ID: label_value(job.job_id),
        LABEL_RECORDINGS: str(len(job.recordings)),
        LABEL_TENANT: label_value(job.tenant),
        LABEL_PRIORITY: job.priority.value,
        LABEL_PROFILE: label_value(job.profile),
        LABEL_ATTEMPT: str(job.attempt),
    }
    if settings.use_kueue:
        labels[LABEL_QUEUE] = queue_for(job, settings)
        priority_class = settings.priority_classes.get(job.priority.value)
        if priority_class:
            labels[LABEL_PRIORITY_CLASS] = priority_class
    labels.update(extra_labels or {})

    annotations = {
        ANNOTATION_MODEL: job.model,
        ANNOTATION_RECORDING_IDS: ",".join(r.recording_id for r in job.recordings),
        ANNOTATION_AUDIO_SECONDS: f"{job.audio_s:.1f}",
    }
    traceparent = next((r.traceparent for r in job.recordings if r.traceparent), None)
    if traceparent:
        annotations[ANNOTATION_TRACEPARENT] = traceparent

    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "KUBESCRIBE_WHISPER_DEVICE", "value": "cuda" if gpu else "cpu"},
        {"name": "KUBESCRIBE_WHISPER_DOWNLOAD_ROOT", "value": settings.model_cache_path},
        {"name": "KUBESCRIBE_JOB_ID", "value": job.job_id},
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": ",".join(
                a
                for a in (
                    f"k8s.job.name={job_name(job.job_id)}",
                    f"k8s.namespace.name={settings.namespace}",
                    settings.otel_resource_attributes,
                )
                if a
            ),
        },
    ]
    env_from: list[dict[str, Any]] = []
    if settings.env_config_map:
        env_from.append({"configMapRef": {"name": settings.env_config_map}})
    # Last, so the Secret's NATS URL and credentials win over anything in the ConfigMap.
    env_from.append({"secretRef": {"name": settings.nats_secret}})

    # Without a PVC nothing is mounted over the model directory: Jobs run offline, so an emptyDir
    # there could only hide models baked into the image (the air-gapped recipe).
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if settings.model_cache_pvc:
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": settings.model_cache_pvc}})
        mounts.append({"name": "model-cache", "mountPath": settings.model_cache_path})

    pod_security, container_security = security_contexts(settings)
    container: dict[str, Any] = {
        "name": COMPONENT,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        # args, not command: the image's entrypoint (tini) stays PID 1 and forwards SIGTERM.
        "args": ["python", "-m", "services.transcriber", "--job", job.job_id],
        "env": env,
        "envFrom": env_from,
        "resources": _with_storage(resources_for(job.profile, settings), settings),
        "securityContext": container_security,
        "volumeMounts": mounts,
    }

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.affinity:
        pod_spec["affinity"] = dict(settings.affinity)
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]

    metadata: dict[str, Any] = {
        "name": job_name(job.job_id),
        "namespace": settings.namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if owner:
        metadata["ownerReferences"] = [dict(owner, blockOwnerDeletion=False)]

    pod_labels = {k: v for k, v in labels.items() if not k.startswith("kueue.x-k8s.io/")}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            # Kueue unsuspends the Job when it admits it; without Kueue nothing would.
            "suspend": settings.use_kueue,
            "backoffLimit": settings.backoff_limit,
            "podFailurePolicy": POD_FAILURE_POLICY,
            "activeDeadlineSeconds": settings.active_deadline_s,
            "ttlSecondsAfterFinished": settings.ttl_after_finished_s,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": dict(annotations)},
                "spec": pod_spec,
            },
        },
    }
