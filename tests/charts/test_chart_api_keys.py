"""The chart's per-tenant API keys: a Secret file mounted into ingest, read as KUBESCRIBE_API_KEYS_FILE."""

from __future__ import annotations

import json

from services.ingest.keys import ApiKey
from tests.charts.conftest import CHART, find, load_values, one, render

FULLNAME = "ks-kubescribe"
KEYS_PATH = "/etc/kubescribe/api-keys/api-keys.json"


def _ingest(objects):
    return one(objects, "Deployment", f"{FULLNAME}-ingest")


def _env(deployment) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_should_mount_the_keys_file_from_a_chart_secret() -> None:
    values = load_values(CHART / "ci" / "api-keys-values.yaml")
    objects = render(values)
    secret = one(objects, "Secret", f"{FULLNAME}-api-keys")
    keys = [ApiKey(**k) for k in json.loads(secret["stringData"]["api-keys.json"])["keys"]]  # what KeyRing reads
    assert [k.tenant for k in keys] == ["acme"]
    ingest = _ingest(objects)
    assert _env(ingest)["KUBESCRIBE_API_KEYS_FILE"] == KEYS_PATH
    pod = ingest["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == f"{FULLNAME}-api-keys"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/kubescribe/api-keys", True)


def test_should_use_an_existing_secret() -> None:
    objects = render({"apiKeys": {"existingSecret": "tenant-keys"}})
    assert not find(objects, "Secret", f"{FULLNAME}-api-keys")
    volume = next(v for v in _ingest(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "tenant-keys"


def test_should_not_render_keys_if_not_set() -> None:
    objects = render()
    assert not find(objects, "Secret", f"{FULLNAME}-api-keys")
    ingest = _ingest(objects)
    assert "KUBESCRIBE_API_KEYS_FILE" not in _env(ingest)
    assert all(v["name"] != "api-keys" for v in ingest["spec"]["template"]["spec"]["volumes"])
