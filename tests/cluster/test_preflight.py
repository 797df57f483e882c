"""The dispatcher's start-up checks: models that cannot load, profiles the ClusterQueue does not
admit (the rendered chart's queues on kmock), a ClusterQueue RBAC forbids reading, and the CLI's
one readable line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client as k8s

from services.common.errors import ConfigurationError
from services.dispatcher import preflight
from tests.cluster.env import settings_from_env

pytestmark = [pytest.mark.k8s]

REPO = Path(__file__).resolve().parents[2]


def _settings(**env: str):
    return settings_from_env({"HF_HUB_OFFLINE": "1", **env})


def test_the_bundled_model_passes() -> None:
    preflight.check_models(_settings())


def test_a_model_directory_without_model_bin_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("not a CTranslate2 model directory (no model.bin)")):
        preflight.check_models(_settings(KUBESCRIBE_DISPATCHER_DEFAULT_MODEL=str(tmp_path / "missing")))


def test_an_unknown_model_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("'tiny.xx' is not a faster-whisper model")):
        preflight.check_models(_settings(KUBESCRIBE_DISPATCHER_TENANT_MODELS='{"acme": "tiny.xx"}'))


def test_a_hub_model_missing_from_the_offline_cache_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = _settings(KUBESCRIBE_DISPATCHER_DEFAULT_MODEL="small.en", KUBESCRIBE_WHISPER_DOWNLOAD_ROOT=str(tmp_path))
    with pytest.raises(ConfigurationError, match=re.escape("'small.en' is not in the model cache")):
        preflight.check_models(settings)


def test_kubernetes_without_the_cache_mounted_warns_and_goes_on(tmp_path, caplog) -> None:
    settings = _settings(
        KUBESCRIBE_BACKEND="kubernetes",
        KUBESCRIBE_DISPATCHER_DEFAULT_MODEL="small.en",
        KUBESCRIBE_KUBERNETES_MODEL_CACHE_PATH=str(tmp_path / "not-mounted"),
    )
    with caplog.at_level(logging.WARNING, logger="services.dispatcher.preflight"):
        preflight.check_models(settings)
    assert "was not checked" in caplog.text


async def _dispatcher(make_cluster, values=None, **env: str):
    cluster = make_cluster()
    await cluster.install(values, run_pods=False)
    await cluster.kueue.aclose()  # nothing to admit here
    return cluster, await cluster.settings_of("dispatcher", **env)


async def test_profiles_the_rendered_cluster_queue_covers_pass(make_cluster) -> None:
    cluster, settings = await _dispatcher(make_cluster, KUBESCRIBE_DISPATCHER_TENANT_MODELS='{"acme": "medium.en"}')
    await preflight.check_queues(settings, cluster.api)


async def test_a_profile_the_cluster_queue_does_not_cover_is_refused(make_cluster) -> None:
    cluster, settings = await _dispatcher(make_cluster, KUBESCRIBE_DISPATCHER_PROFILES='{"tiny.en": "mig-7g.80gb"}')
    with pytest.raises(ConfigurationError) as caught:
        await preflight.check_queues(settings, cluster.api)
    message = str(caught.value)
    assert "needs nvidia.com/mig-7g.80gb" in message
    assert "ClusterQueue ks-kubescribe (LocalQueue ks-kubescribe) does not cover it" in message
    assert "\n" not in message


async def test_a_zero_quota_is_refused(make_cluster) -> None:
    """The chart refuses a zero quota at render time; a ClusterQueue edited afterwards (or one the
    chart did not make) is caught when the dispatcher starts."""
    cluster, settings = await _dispatcher(make_cluster)
    queue = next(o for o in cluster.objects if o["kind"] == "ClusterQueue")
    for group in queue["spec"]["resourceGroups"]:
        for flavor in group["flavors"]:
            for resource in flavor["resources"]:
                if resource["name"] == "nvidia.com/mig-1g.5gb":
                    resource["nominalQuota"] = "0"
    await asyncio.to_thread(
        k8s.CustomObjectsApi(cluster.api).patch_cluster_custom_object,
        "kueue.x-k8s.io",
        "v1beta2",
        "clusterqueues",
        queue["metadata"]["name"],
        {"spec": queue["spec"]},
    )
    with pytest.raises(ConfigurationError, match=re.escape("nvidia.com/mig-1g.5gb a nominal quota of 0")):
        await preflight.check_queues(settings, cluster.api)


async def test_a_missing_local_queue_is_refused(make_cluster) -> None:
    cluster, settings = await _dispatcher(make_cluster, KUBESCRIBE_KUEUE_QUEUE="nobody")
    with pytest.raises(ConfigurationError, match="LocalQueue nobody in namespace transcribe does not exist"):
        await preflight.check_queues(settings, cluster.api)


async def test_a_cluster_queue_forbidden_by_rbac_warns_and_goes_on(make_cluster, kmock, caplog) -> None:
    cluster, settings = await _dispatcher(make_cluster, KUBESCRIBE_DISPATCHER_PROFILES='{"tiny.en": "mig-7g.80gb"}')
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
    kmock["get /apis/kueue.x-k8s.io/v1beta2/clusterqueues/ks-kubescribe"] << 403 << forbidden
    with caplog.at_level(logging.WARNING, logger="services.dispatcher.preflight"):
        await preflight.check_queues(settings, cluster.api)
    assert "cannot read ClusterQueue ks-kubescribe (of LocalQueue ks-kubescribe) (forbidden by RBAC)" in caplog.text


def test_the_service_refuses_to_start_with_one_readable_line(tmp_path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KUBESCRIBE_DISPATCHER_DEFAULT_MODEL": str(tmp_path / "gone"),
        "KUBESCRIBE_NATS_URL": "nats://127.0.0.1:1",  # never reached: the check comes first
        "COLUMNS": "400",  # the error console wraps at the terminal's width
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime.serve", "dispatcher"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "ConfigurationError" in line]
    assert len(lines) == 1 and "not a CTranslate2 model directory" in lines[0], done.stderr
