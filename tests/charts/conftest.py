"""Offline rendering of charts/kubescribe (helm-python-sdk) and validation of every object.

Built-in kinds are validated by kubernetes-validate in strict mode (a missing schema is a
failure, not its usual WARN); Kueue, KEDA, GAIE and Gateway API objects against the CRD schemas
copied verbatim into ``tests/data/upstream/crds`` (provenance in its README), made strict the way
the API server prunes: an unknown field is an error.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubescribe"
UPSTREAM = REPO / "tests" / "data" / "upstream"
KUBERNETES_VERSION = "1.33"
RELEASE, NAMESPACE = "ks", "transcribe"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


ALL_APIS = [
    "kueue.x-k8s.io/v1beta2/ClusterQueue",
    "kueue.x-k8s.io/v1beta2/Workload",
    "keda.sh/v1alpha1/ScaledObject",
    "inference.networking.k8s.io/v1/InferencePool",
    "gateway.networking.k8s.io/v1/HTTPRoute",
    "llm-d.ai/v1alpha2/InferenceObjective",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
]
"""The CRD-backed APIs a full cluster serves: renders assume them unless a test says otherwise."""


def with_capabilities(values: dict[str, Any] | None) -> dict[str, Any]:
    """``values`` rendered as on a cluster with every CRD installed (``capabilities.apiVersions``)."""
    values = copy.deepcopy(values or {})
    values.setdefault("capabilities", {}).setdefault("apiVersions", ALL_APIS)
    return values


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    return _chart().render(with_capabilities(values), name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered object (NOTES.txt excluded)."""
    objects = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _strict(schema: Any) -> Any:
    """A CRD schema where unknown fields fail (the API server would silently prune them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → strict openAPIV3Schema, from every CRD under tests/data/upstream/crds."""
    if not (UPSTREAM / "crds").is_dir():
        pytest.fail(f"CRD schemas not found in {UPSTREAM / 'crds'} (tests/data/upstream is part of the repository)")
    schemas = {}
    for path in sorted((UPSTREAM / "crds").rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def validate(obj: dict[str, Any]) -> None:
    """Validate one object: CRD schema for custom kinds, kubernetes-validate (strict) otherwise."""
    key = (obj["apiVersion"], obj["kind"])
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    schema = crd_schemas().get(key)
    if schema is not None:
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{label}: " + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:  # the CLI's WARN: a failure here
        pytest.fail(f"{label}: no Kubernetes schema ({exc.message})")
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{label}: {path}: {exc.message}")
