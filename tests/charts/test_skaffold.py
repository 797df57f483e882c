"""skaffold.yaml validates against the published JSON schema of skaffold/v4beta14."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.charts.conftest import REPO, UPSTREAM

SCHEMA = UPSTREAM / "skaffold" / "skaffold-v4beta14.json"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def test_validates_against_the_schema(config):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    assert [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors] == []


def test_schema_catches_a_typo(config):
    """The schema is strict (additionalProperties: false), so the test above means something."""
    schema = json.loads(SCHEMA.read_text())
    broken = dict(config, deploy={"helm": {"releases": [{"name": "x", "chartPth": "charts/kubescribe"}]}})
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_profiles_and_chart(config):
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert {p["name"] for p in config["profiles"]} == {"dev", "gpu"}
    image = config["build"]["artifacts"][0]["image"]
    for release in [config["deploy"]["helm"]["releases"][0]] + [
        p["deploy"]["helm"]["releases"][0] for p in config["profiles"]
    ]:
        assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
        assert image.replace("/", "_").replace(".", "_") in release["setValueTemplates"]["image.repository"]
    dev, gpu = ({p["name"]: p for p in config["profiles"]}[n]["deploy"]["helm"]["releases"][0] for n in ("dev", "gpu"))
    assert dev["setValues"]["transcriber.useDas"] == "false" and dev["setValues"]["devModelServer.enabled"] == "true"
    assert gpu["setValues"]["transcriber.useDas"] == "true" and "llm.baseUrl" in gpu["setValueTemplates"]


def test_profile_values_render(config):
    """Each profile's values are accepted by the chart's schema and render."""
    from tests.charts.conftest import render

    for profile in config["profiles"]:
        values: dict = {}
        release = profile["deploy"]["helm"]["releases"][0]
        flat = (
            {**release.get("setValues", {}), "llm.baseUrl": "http://gw/v1"}
            if profile["name"] == "gpu"
            else dict(release.get("setValues", {}))
        )
        for dotted, raw in flat.items():
            node = values
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = yaml.safe_load(raw) if isinstance(raw, str) else raw
        assert render(values)
