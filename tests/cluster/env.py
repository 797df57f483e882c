"""A container's environment as the kubelet builds it, from the emulated API server.

One resolver for both sides of the harness: the pod runner starts each Job's container with it,
and the end-to-end test builds the dispatcher's :class:`~services.common.settings.Settings` from
the rendered Deployment's container with it, so both see what they would see in the cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from services.common.settings import Settings

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class ContainerConfigError(Exception):
    """What the kubelet reports as ``CreateContainerConfigError`` (the pod never starts)."""


def _source(api: k8s.ApiClient, kind: str, namespace: str, name: str, optional: bool) -> dict[str, str] | None:
    core = k8s.CoreV1Api(api)
    try:
        if kind == "Secret":
            data = core.read_namespaced_secret(name, namespace).data or {}
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return dict(core.read_namespaced_config_map(name, namespace).data or {})
    except ApiException as exc:
        if exc.status == 404 and optional:
            return None
        if exc.status == 404:
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found') from exc
        raise


def resolve_env(api: k8s.ApiClient, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """``envFrom`` in order (later sources win), then ``env`` (wins over ``envFrom``), with
    ``secretKeyRef``/``configMapKeyRef`` read from the API and ``$(VAR)`` references expanded.
    Blocking (API calls): run it in a thread from async code."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key in source:
                ref = source[key]
                values = _source(api, kind, namespace, ref["name"], bool(ref.get("optional")))
                prefix = source.get("prefix", "")
                env.update({f"{prefix}{k}": v for k, v in (values or {}).items()})
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry or "valueFrom" not in entry:
            env[name] = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), str(entry.get("value", "")))
            continue
        value_from = entry["valueFrom"]
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in value_from:
                ref = value_from[key]
                optional = bool(ref.get("optional"))
                values = _source(api, kind, namespace, ref["name"], optional)
                if values is None:
                    break
                if ref["key"] not in values:
                    if optional:
                        break
                    raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
                env[name] = values[ref["key"]]
                break
        else:
            raise ContainerConfigError(f"env {name}: valueFrom {sorted(value_from)} is not emulated")
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` holding only the ``KUBESCRIBE_``/``OTEL_`` variables of ``env`` (a container
    sees no others of ours), restored afterwards."""
    ours = {k: v for k, v in os.environ.items() if not k.startswith(("KUBESCRIBE_", "OTEL_"))}
    with mock.patch.dict(os.environ, {**ours, **env}, clear=True):
        yield


def settings_from_env(env: dict[str, str]) -> Settings:
    """The :class:`Settings` a service would load from ``env``, every concern read now (so the
    result no longer depends on the process environment)."""
    settings = Settings()
    with environment(env):
        for name in dir(Settings):
            if not name.startswith("_"):
                getattr(settings, name)
    return settings


def route(env: dict[str, str], services: dict[str, str]) -> dict[str, str]:
    """Cluster DNS for the harness: each in-cluster address (``services`` key, e.g.
    ``nats://ks-nats:4222``) in a value becomes the test server's (the value)."""
    routed = {}
    for key, value in env.items():
        for address, real in services.items():
            value = value.replace(address, real)
        routed[key] = value
    return routed
