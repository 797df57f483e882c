"""The dispatcher's start-up checks: refuse a configuration under which recordings would only
burn their attempts or wait forever, with one readable line, before taking any message.

- :func:`check_models`: every configured model (``default_model`` and the ``tenant_models``)
  must be loadable where the transcriber runs: a model directory must hold ``model.bin``; the
  bundled tiny.en is always there; a hub name must be a faster-whisper model or a hub repo id
  and, when transcribers run offline (Jobs always do: ``HF_HUB_OFFLINE=1``), be in the model
  cache. On the Kubernetes backend the cache is the Jobs' PVC: checked when the dispatcher has it
  at ``model_cache_path``, else a warning says the check was skipped.
- :func:`check_queues`: on the Kubernetes backend with Kueue, every model's profile asks for
  resources (:func:`~.backends.manifests.resources_for`) that the ClusterQueue behind each
  configured LocalQueue must cover (``resourceGroups[].coveredResources``) with a non-zero
  nominal quota; otherwise its Workload is inadmissible and the suspended Job never starts. A
  read the dispatcher's RBAC forbids (a namespaced Role cannot grant the cluster-scoped
  ClusterQueue) is a warning: the check is skipped and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.common.errors import ConfigurationError
from services.common.settings import Settings
from services.dispatcher.backends.manifests import resources_for
from services.dispatcher.planner import Planner
from services.transcriber.engine import BUNDLED_MODEL, bundled_model_dir

__all__ = ["check_models", "check_queues", "configured_models"]

logger = logging.getLogger(__name__)

KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"


def configured_models(settings: Settings) -> list[str]:
    """The models jobs may ask for, in a stable order without repeats."""
    dispatcher = settings.dispatcher
    return list(dict.fromkeys([dispatcher.default_model, *dispatcher.tenant_models.values()]))


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def _cache_dir(settings: Settings) -> tuple[Path | None, bool]:
    """(where transcribers look for hub models, whether they run offline)."""
    if settings.dispatcher.backend == "kubernetes":
        return Path(settings.kubernetes.model_cache_path), True  # build_job sets HF_HUB_OFFLINE=1
    return settings.transcriber.download_root, os.environ.get("HF_HUB_OFFLINE") == "1"


def _model_problem(name: str, settings: Settings) -> str | None:
    """Why ``name`` cannot load where the transcriber runs, or None; warns when it cannot tell."""
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not (path / "model.bin").is_file():
            return f"model {name!r} is not a CTranslate2 model directory (no model.bin)"
        return None
    if name == BUNDLED_MODEL and bundled_model_dir() is not None:
        return None
    from faster_whisper.utils import available_models, download_model

    if "/" not in name and name not in available_models():
        return f"model {name!r} is not a faster-whisper model ({', '.join(available_models())}) or a directory"
    cache, offline = _cache_dir(settings)
    if not offline:
        return None  # downloaded on first use
    if settings.dispatcher.backend == "kubernetes" and (cache is None or not cache.is_dir()):
        logger.warning(
            "model %r: the Jobs' model cache %s is not mounted in the dispatcher, so whether it holds"
            " the model was not checked; Jobs run offline and fail if it does not",
            name,
            cache,
        )
        return None
    try:
        download_model(name, local_files_only=True, cache_dir=str(cache) if cache else None)
    except Exception:  # huggingface_hub raises several types for "not in the cache"
        where = cache or "the Hugging Face cache"
        return (
            f"model {name!r} is not in the model cache ({where}) and transcribers run offline:"
            " pre-fetch it into the cache, or use the bundled tiny.en"
        )
    return None


def check_models(settings: Settings) -> None:
    """Raise :class:`ConfigurationError` naming the first configured model that cannot load."""
    for name in configured_models(settings):
        problem = _model_problem(name, settings)
        if problem:
            raise ConfigurationError(f"{problem} (KUBESCRIBE_DISPATCHER_DEFAULT_MODEL / _TENANT_MODELS)")


def _covered(cluster_queue: dict[str, Any]) -> dict[str, Decimal]:
    """Covered resource → nominal quota summed over the flavors."""
    from kubernetes.utils import parse_quantity

    quotas: dict[str, Decimal] = {}
    for group in (cluster_queue.get("spec") or {}).get("resourceGroups") or []:
        for resource in group.get("coveredResources") or []:
            quotas.setdefault(resource, Decimal(0))
        for flavor in group.get("flavors") or []:
            for resource in flavor.get("resources") or []:
                quota = parse_quantity(resource.get("nominalQuota", 0))
                quotas[resource["name"]] = quotas.get(resource["name"], Decimal(0)) + quota
    return quotas


def _read(call, what: str) -> dict[str, Any] | None:
    """One API read; None (and a warning) when RBAC forbids it; other failures are fatal."""
    from kubernetes.client.exceptions import ApiException

    try:
        return call()
    except ApiException as exc:
        if exc.status == 403:
            logger.warning("cannot read %s (forbidden by RBAC): Kueue admission of the profiles not checked", what)
            return None
        if exc.status == 404:
            raise ConfigurationError(f"{what} does not exist: Jobs labelled with it would never be admitted") from exc
        raise ConfigurationError(f"cannot read {what}: HTTP {exc.status} {exc.reason}") from exc


def _queue_problems(settings: Settings, api_client: Any) -> list[str]:
    from kubernetes import client as k8s

    custom = k8s.CustomObjectsApi(api_client)
    kube = settings.kubernetes
    planner = Planner(settings.dispatcher)
    problems: list[str] = []
    dispatcher = settings.dispatcher
    by_queue: dict[str, set[str]] = {kube.kueue_queue: {dispatcher.default_model}}
    for tenant in {*dispatcher.tenant_models, *kube.tenant_queues}:  # what queue_for picks per tenant
        queue = kube.tenant_queues.get(tenant, kube.kueue_queue)
        by_queue.setdefault(queue, set()).add(dispatcher.tenant_models.get(tenant, dispatcher.default_model))
    for queue, models in sorted(by_queue.items()):
        local = _read(
            lambda q=queue: custom.get_namespaced_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, kube.namespace, "localqueues", q
            ),
            f"LocalQueue {queue} in namespace {kube.namespace}",
        )
        if local is None:
            continue
        cq_name = (local.get("spec") or {}).get("clusterQueue", "")
        cluster_queue = _read(
            lambda c=cq_name: custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", c),
            f"ClusterQueue {cq_name} (of LocalQueue {queue})",
        )
        if cluster_queue is None:
            continue
        quotas = _covered(cluster_queue)
        for model in sorted(models):
            profile = planner.profile_for(model)
            wanted = resources_for(profile, kube)
            for resource in sorted({*wanted.get("requests", {}), *wanted.get("limits", {})}):
                if resource not in quotas:
                    problems.append(
                        f"model {model!r} runs on profile {profile!r}, which needs {resource}, and ClusterQueue"
                        f" {cq_name} (LocalQueue {queue}) does not cover it: add it to the ClusterQueue's"
                        " resourceGroups or map the model to a covered profile (KUBESCRIBE_DISPATCHER_PROFILES)"
                    )
                elif quotas[resource] <= 0:
                    problems.append(
                        f"model {model!r} runs on profile {profile!r}; ClusterQueue {cq_name} gives {resource}"
                        " a nominal quota of 0, so its Jobs would never be admitted"
                    )
    return problems


async def check_queues(settings: Settings, api_client: Any) -> None:
    """On the Kubernetes backend with Kueue: raise :class:`ConfigurationError` when a configured
    model's profile cannot be admitted by its ClusterQueue (see the module docstring)."""
    if settings.dispatcher.backend != "kubernetes" or not settings.kubernetes.use_kueue or api_client is None:
        return
    problems = await asyncio.to_thread(_queue_problems, settings, api_client)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigurationError(problems[0] + more)
