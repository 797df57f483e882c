"""charts/kubescribe: every scenario renders and validates, lint is clean, and each option
is tested in pairs: "should set X" and "should not render X if not set"."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.common import settings as settings_module
from services.common.events import Priority
from services.common.settings import KubernetesSettings
from services.dispatcher.backends.manifests import build_job
from tests.charts.conftest import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    container_env,
    find,
    load_values,
    one,
    render,
    render_files,
    validate,
    with_capabilities,
)
from tests.k8s.conftest import make_job

FULLNAME = f"{RELEASE}-kubescribe"
SCENARIOS = [pytest.param({}, id="defaults")] + [
    pytest.param(load_values(path), id=path.name.removesuffix("-values.yaml")) for path in CI_VALUES
]


def deployment(objects, component):
    return one(objects, "Deployment", f"{FULLNAME}-{component}")


class TestScenarios:
    def test_ci_scenarios_present(self):
        names = {p.name for p in CI_VALUES}
        assert {
            "gpu-das-values.yaml",
            "kueue-off-values.yaml",
            "keda-off-values.yaml",
            "external-nats-values.yaml",
            "dev-model-server-values.yaml",
        } <= names

    @pytest.mark.parametrize("values", SCENARIOS)
    def test_every_object_validates(self, values):
        objects = render(values)
        assert {"Deployment", "Service", "ConfigMap"} <= {o["kind"] for o in objects}
        for obj in objects:
            validate(obj)

    @pytest.mark.parametrize("values", SCENARIOS)
    def test_lint_is_clean(self, values, tmp_path):
        """helm lint (strict). The NATS dependency cannot be fetched offline: lint a copy without it."""
        chart = tmp_path / "kubescribe"
        shutil.copytree(CHART, chart)
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        meta.pop("dependencies")
        (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        report = helm.lint(chart, with_capabilities(values), strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert (problems, report["errors"]) == ([], [])

    def test_nats_dependency_is_declared_not_vendored(self):
        meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
        [nats] = meta["dependencies"]
        assert (nats["name"], nats["condition"]) == ("nats", "nats.enabled")
        assert nats["repository"].startswith("https://nats-io.github.io/")
        assert not (CHART / "charts").exists()

    @pytest.mark.parametrize("values", SCENARIOS)
    def test_env_names_match_settings(self, values):
        """Every KUBESCRIBE_* variable the chart sets is read by some settings class."""
        known = _known_env_names()
        objects = render(values)
        names = set()
        for dep in find(objects, "Deployment"):
            names |= set(container_env(dep))
        for cm in find(objects, "ConfigMap"):
            names |= set(cm["data"])
        for secret in find(objects, "Secret"):
            names |= set(secret.get("stringData", {}))
        unknown = sorted(n for n in names if n.startswith("KUBESCRIBE_") and n not in known)
        assert unknown == []

    def test_schema_rejects_unknown_keys(self):
        with pytest.raises(helm.HelmError, match="replicas"):
            render({"ingest": {"replicas": 3}})
        with pytest.raises(helm.HelmError, match="a100"):
            render({"kueue": {"clusterQueue": {"migProfiles": {"a100": 1}}}})

    def test_values_are_documented_line_by_line(self):
        undocumented = _undocumented_keys((CHART / "values.yaml").read_text().splitlines())
        assert undocumented == []


class TestDispatcherSettings:
    """The chart passes settings; the dispatcher builds the Job. Both must agree."""

    @pytest.mark.parametrize("values", SCENARIOS)
    def test_job_built_from_rendered_env_validates(self, values, monkeypatch):
        from tests.charts.conftest import validate as validate_object

        objects = render(values)
        env = container_env(deployment(objects, "dispatcher"))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = KubernetesSettings()
        assert settings.namespace == NAMESPACE and settings.instance == RELEASE
        job = build_job(make_job(priority=Priority.high, profile="mig-1g.5gb"), settings)
        validate_object(job)
        labels = job["metadata"]["labels"]
        if settings.use_kueue and find(objects, "LocalQueue"):
            assert find(objects, "LocalQueue", labels["kueue.x-k8s.io/queue-name"])
            assert find(objects, "WorkloadPriorityClass", labels["kueue.x-k8s.io/priority-class"])
        secret_names = {s["metadata"]["name"] for s in find(objects, "Secret")}
        existing = values.get("natsAuth", {}).get("existingSecret")
        assert settings.nats_secret == existing or settings.nats_secret in secret_names
        assert find(objects, "ConfigMap", settings.env_config_map)

    def test_should_request_das_slices_and_mount_the_model_cache(self, monkeypatch):
        values = load_values(CHART / "ci" / "gpu-das-values.yaml")
        objects = render(values)
        for name, value in container_env(deployment(objects, "dispatcher")).items():
            monkeypatch.setenv(name, value)
        job = build_job(make_job(profile="mig-2g.10gb"), KubernetesSettings())
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/mig-2g.10gb"] == "1"
        claim = one(objects, "PersistentVolumeClaim")["metadata"]["name"]
        assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"

    def test_should_not_request_das_slices_if_off(self):
        env = container_env(deployment(render({"transcriber": {"useDas": False}}), "dispatcher"))
        assert env["KUBESCRIBE_KUBERNETES_USE_DAS"] == "false"
        assert "KUBESCRIBE_KUBERNETES_MODEL_CACHE_PVC" not in env


class TestRbac:
    def test_role_grants_only_what_the_dispatcher_needs(self):
        objects = render()
        role = one(objects, "Role")
        assert role["metadata"]["namespace"] == NAMESPACE
        assert role["rules"] == [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["get", "list", "watch"]},
        ]
        binding = one(objects, "RoleBinding")
        sa = one(objects, "ServiceAccount", f"{FULLNAME}-dispatcher")["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        assert deployment(objects, "dispatcher")["spec"]["template"]["spec"]["serviceAccountName"] == sa
        assert not find(objects, "ClusterRole")

    def test_should_not_grant_workloads_without_kueue(self):
        role = one(render({"kueue": {"enabled": False, "manageJobs": False}}), "Role")
        assert [r["apiGroups"] for r in role["rules"]] == [["batch"]]

    def test_other_services_get_no_token(self):
        objects = render()
        for component in ("ingest", "summarizer"):
            assert deployment(objects, component)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


class TestKueue:
    def test_should_set_kueue_objects(self):
        objects = render(load_values(CHART / "ci" / "gpu-das-values.yaml"))
        cq = one(objects, "ClusterQueue")
        assert cq["apiVersion"] == "kueue.x-k8s.io/v1beta2"
        assert cq["spec"]["cohortName"] == "gpu-pool"
        assert cq["spec"]["queueingStrategy"] == "StrictFIFO"
        [group] = cq["spec"]["resourceGroups"]
        assert group["coveredResources"] == [
            "cpu",
            "memory",
            "ephemeral-storage",  # every Job requests it (/tmp); Kueue admits only covered resources
            "nvidia.com/mig-1g.5gb",
            "nvidia.com/mig-2g.10gb",
            "nvidia.com/mig-3g.20gb",
            "nvidia.com/mig-7g.40gb",
        ]
        quotas = {r["name"]: r["nominalQuota"] for r in group["flavors"][0]["resources"]}
        assert quotas["nvidia.com/mig-1g.5gb"] == "14"
        flavor = one(objects, "ResourceFlavor")
        assert group["flavors"][0]["name"] == flavor["metadata"]["name"]
        assert flavor["spec"]["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
        queues = {q["metadata"]["name"]: q["spec"]["clusterQueue"] for q in find(objects, "LocalQueue")}
        assert queues == {FULLNAME: cq["metadata"]["name"], "acme-transcribe": cq["metadata"]["name"]}
        classes = {c["metadata"]["name"]: c["value"] for c in find(objects, "WorkloadPriorityClass")}
        assert classes == {f"{FULLNAME}-high": 1000, f"{FULLNAME}-normal": 100, f"{FULLNAME}-low": 10}
        env = container_env(deployment(objects, "dispatcher"))
        assert env["KUBESCRIBE_KUEUE_QUEUE"] == FULLNAME
        assert env["KUBESCRIBE_KUBERNETES_TENANT_QUEUES"] == '{"acme":"acme-transcribe"}'

    def test_should_not_render_kueue_objects_if_not_enabled(self):
        objects = render(load_values(CHART / "ci" / "kueue-off-values.yaml"))
        for kind in ("ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"):
            assert find(objects, kind) == []
        env = container_env(deployment(objects, "dispatcher"))
        assert env["KUBESCRIBE_KUBERNETES_PRIORITY_CLASSES"] == "{}"
        assert env["KUBESCRIBE_KUBERNETES_USE_KUEUE"] == "false"


class TestKeda:
    def test_should_set_scaled_objects_with_exact_consumers(self):
        objects = render()
        scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in find(objects, "ScaledObject")}
        assert set(scaled) == {f"{FULLNAME}-dispatcher", f"{FULLNAME}-summarizer"}
        monitor = f"{RELEASE}-nats-headless.{NAMESPACE}.svc.cluster.local:8222"
        [summarizer] = scaled[f"{FULLNAME}-summarizer"]["spec"]["triggers"]
        assert summarizer["type"] == "nats-jetstream"
        meta = summarizer["metadata"]
        assert (meta["stream"], meta["consumer"], meta["account"]) == ("TRANSCRIPTS", "summarizer", "$G")
        assert meta["natsServerMonitoringEndpoint"] == monitor
        assert int(meta["lagThreshold"]) > 0
        # The dispatcher scales on pending messages only (KEDA's nats-jetstream adds ack-pending).
        [dispatcher] = scaled[f"{FULLNAME}-dispatcher"]["spec"]["triggers"]
        assert dispatcher["type"] == "metrics-api"
        meta = dispatcher["metadata"]
        assert meta["url"] == f"http://{monitor}/jsz?acc=$G&consumers=true"
        assert meta["valueLocation"].endswith(".num_pending") and int(meta["targetValue"]) > 0
        assert _pending_path(meta["valueLocation"]) == ("AUDIO", "dispatcher")
        for component in ("dispatcher", "summarizer"):
            assert "replicas" not in deployment(objects, component)["spec"]

    def test_consumer_names_match_the_topology(self):
        from services.common import topology

        triggers = [s["spec"]["triggers"][0]["metadata"] for s in find(render(), "ScaledObject")]
        pairs = {
            _pending_path(m["valueLocation"]) if "valueLocation" in m else (m["stream"], m["consumer"])
            for m in triggers
        }
        assert pairs == {
            (topology.AUDIO_STREAM, topology.DISPATCHER_CONSUMER),
            (topology.TRANSCRIPTS_STREAM, topology.SUMMARIZER_CONSUMER),
        }

    def test_should_not_render_scaled_objects_if_not_enabled(self):
        objects = render(load_values(CHART / "ci" / "keda-off-values.yaml"))
        assert find(objects, "ScaledObject") == []
        assert deployment(objects, "summarizer")["spec"]["replicas"] == 3

    def test_external_nats_needs_a_monitoring_endpoint(self):
        with pytest.raises(helm.HelmError, match=r"externalNats\.monitoringEndpoint"):
            render({"nats": {"enabled": False}, "externalNats": {"url": "nats://n:4222"}})


class TestNats:
    def test_should_use_the_dependency_by_default(self):
        """With a generated password: the bundled NATS is never open."""
        data = one(render(), "Secret", f"{RELEASE}-nats-auth")["stringData"]
        assert data["KUBESCRIBE_NATS_URL"] == f"nats://{RELEASE}-nats.{NAMESPACE}.svc:4222"
        assert data["KUBESCRIBE_NATS_USER"] == "kubescribe"
        assert re.fullmatch(r"[A-Za-z0-9]{32}", data["KUBESCRIBE_NATS_PASSWORD"])

    def test_should_use_an_external_url_and_credentials(self):
        objects = render(
            {
                "nats": {"enabled": False},
                "externalNats": {"url": "nats://n:4222", "monitoringEndpoint": "n:8222"},
                "natsAuth": {"user": "u", "password": "p"},
            }
        )
        assert one(objects, "Secret", f"{RELEASE}-nats-auth")["stringData"] == {
            "KUBESCRIBE_NATS_URL": "nats://n:4222",
            "KUBESCRIBE_NATS_USER": "u",
            "KUBESCRIBE_NATS_PASSWORD": "p",
        }

    def test_should_not_render_a_nats_secret_with_an_existing_one(self):
        objects = render(load_values(CHART / "ci" / "external-nats-values.yaml"))
        assert find(objects, "Secret") == []
        [container] = deployment(objects, "ingest")["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "shared-nats-credentials"}} in container["envFrom"]
        assert {"secretRef": {"name": "kubescribe-api-token"}} in container["envFrom"]

    def test_no_nats_at_all_is_a_clear_error(self):
        with pytest.raises(helm.HelmError, match=r"externalNats\.url"):
            render({"nats": {"enabled": False}, "keda": {"enabled": False}})


class TestLlm:
    def test_should_set_inference_pool_and_route(self):
        objects = render(load_values(CHART / "ci" / "dev-model-server-values.yaml"))
        pool = one(objects, "InferencePool")
        sim = deployment(objects, "llm-sim")
        assert pool["spec"]["selector"]["matchLabels"] == sim["spec"]["selector"]["matchLabels"]
        assert pool["spec"]["targetPorts"] == [{"number": 8000}]
        assert pool["spec"]["endpointPickerRef"]["name"] == "kubescribe-epp"
        route = one(objects, "HTTPRoute")
        assert route["spec"]["parentRefs"][0]["name"] == "inference-gateway"
        [backend] = route["spec"]["rules"][0]["backendRefs"]
        assert backend == {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": pool["metadata"]["name"],
        }
        args = sim["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--max-model-len=16384" in args

    def test_should_not_render_inference_pool_or_route_if_not_set(self):
        objects = render()
        assert find(objects, "InferencePool") == [] and find(objects, "HTTPRoute") == []

    def test_should_use_an_existing_gateway(self):
        objects = render(load_values(CHART / "ci" / "gpu-das-values.yaml"))
        env = container_env(deployment(objects, "summarizer"))
        gateway = "http://infra-inference-scheduling-inference-gateway-istio.llm-d.svc.cluster.local/v1"
        assert env["KUBESCRIBE_LLM_BASE_URL"] == gateway  # llm-d guides name it infra-<guide>-inference-gateway-istio
        assert find(objects, "Deployment", f"{FULLNAME}-llm-sim") == []

    def test_should_default_to_the_dev_model_server(self):
        env = container_env(deployment(render(), "summarizer"))
        assert env["KUBESCRIBE_LLM_BASE_URL"] == f"http://{FULLNAME}-llm-sim.{NAMESPACE}.svc:8000/v1"

    def test_route_without_pool_is_a_clear_error(self):
        with pytest.raises(helm.HelmError, match=r"inferencePool\.enabled"):
            render({"devModelServer": {"httpRoute": {"enabled": True}}})

    def test_no_llm_is_a_clear_error(self):
        with pytest.raises(helm.HelmError, match=r"llm\.baseUrl"):
            render({"devModelServer": {"enabled": False}})


class TestServices:
    @pytest.mark.parametrize("component", ["ingest", "dispatcher", "summarizer", "notifier"])
    def test_deployments_are_hardened_and_probed(self, component):
        dep = deployment(render(), component)
        pod = dep["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["args"] == ["kubescribe", "serve", component]
        assert "command" not in container  # the image's entrypoint, tini, stays PID 1
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert container["livenessProbe"] and container["readinessProbe"]
        assert container["resources"]["requests"]
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]

    def test_should_set_the_notifier_webhook_settings(self):
        dep = deployment(
            render(
                {
                    "notifier": {
                        "existingSecret": "webhook-keys",
                        "tenantUrls": {"acme": "https://hooks.acme.example/k"},
                        "allowedNetworks": ["10.20.0.0/16"],
                    }
                }
            ),
            "notifier",
        )
        env = container_env(dep)
        assert json.loads(env["KUBESCRIBE_NOTIFIER_TENANT_URLS"]) == {"acme": "https://hooks.acme.example/k"}
        assert json.loads(env["KUBESCRIBE_NOTIFIER_ALLOWED_NETWORKS"]) == ["10.20.0.0/16"]
        [container] = dep["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "webhook-keys"}} in container["envFrom"]

    def test_should_not_render_the_notifier_if_not_enabled(self):
        objects = render({"notifier": {"enabled": False}})
        assert not [d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("-notifier")]
        with pytest.raises(helm.HelmError, match="tenantUrls"):
            render({"notifier": {"tenantUrls": {"acme": "ftp://x"}}})

    def test_checksum_changes_with_the_config(self):
        def checksum(values):
            return deployment(render(values), "ingest")["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]

        assert checksum({}) != checksum({"telemetry": {"otlpEndpoint": "http://otel:4317"}})

    def test_should_set_otlp_settings(self):
        cm = one(
            render({"telemetry": {"otlpEndpoint": "http://otel:4317", "resourceAttributes": "env=dev"}}), "ConfigMap"
        )
        assert cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4317"
        assert cm["data"]["OTEL_RESOURCE_ATTRIBUTES"] == "env=dev"

    def test_should_not_set_otlp_settings_if_not_set(self):
        assert not [k for k in one(render(), "ConfigMap")["data"] if k.startswith("OTEL_EXPORTER")]

    def test_should_set_the_api_token_secret(self):
        objects = render({"apiToken": {"value": "s3cret"}})
        secret = one(objects, "Secret", f"{FULLNAME}-api-token")
        assert secret["stringData"] == {"KUBESCRIBE_API_TOKEN": "s3cret"}

    def test_should_generate_the_api_token_if_not_set(self):
        secret = one(render(), "Secret", f"{FULLNAME}-api-token")
        assert re.fullmatch(r"[A-Za-z0-9]{32}", secret["stringData"]["KUBESCRIBE_API_TOKEN"])

    def test_should_not_render_the_api_token_secret_if_disabled(self):
        objects = render({"apiToken": {"disabled": True}})
        assert find(objects, "Secret", f"{FULLNAME}-api-token") == []
        [container] = deployment(objects, "ingest")["spec"]["template"]["spec"]["containers"]
        assert not [e for e in container["envFrom"] if "api-token" in str(e)]

    def test_should_not_render_the_model_cache_if_not_set(self):
        objects = render()
        assert find(objects, "PersistentVolumeClaim") == []

    def test_helm_test_pod_calls_the_api(self):
        pod = one(render(), "Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["containers"][0]["command"][-1].endswith("/readyz")

    def test_notes_print_next_commands(self):
        notes = next(v for k, v in render_files().items() if k.endswith("NOTES.txt"))
        assert f"helm test {RELEASE}" in notes and "port-forward" in notes


def _pending_path(location: str) -> tuple[str, str]:
    """(stream, consumer) of a KEDA metrics-api GJSON path into /jsz ending in num_pending."""
    match = re.fullmatch(
        r'account_details\.0\.stream_detail\.#\(name=="([^"]+)"\)\.consumer_detail\.#\(name=="([^"]+)"\)\.num_pending',
        location,
    )
    assert match, location
    return match.group(1), match.group(2)


def _known_env_names() -> set[str]:
    """Environment variables read by the settings classes (prefix + field, or the field's alias)."""
    from services.common import metrics_server

    classes = [
        obj
        for module in (settings_module, metrics_server)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings
    ]
    names = {"KUBESCRIBE_LOG_LEVEL"}  # read by services.cli before any settings class
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


def _undocumented_keys(lines: list[str]) -> list[str]:
    """Keys of values.yaml that are neither documented (`# --` right above) nor inside a documented key."""
    undocumented = []
    documented_indent: int | None = None
    previous = ""
    for number, line in enumerate(lines, 1):
        match = re.match(r"^(\s*)([A-Za-z0-9_.$-]+):(.*)$", line)
        if not match:
            if line.strip():
                previous = line
            continue
        indent = len(match.group(1))
        if documented_indent is not None and indent <= documented_indent:
            documented_indent = None
        if documented_indent is None:
            if previous.strip().startswith("# --"):
                documented_indent = indent
            elif match.group(3).strip() or _is_leaf_list(lines, number):
                undocumented.append(f"line {number}: {line.strip()}")
        previous = line
    return undocumented


def _is_leaf_list(lines: list[str], number: int) -> bool:
    following = next((line for line in lines[number:] if line.strip() and not line.strip().startswith("#")), "")
    return following.strip().startswith("- ")


def test_chart_path_is_the_repository_chart():
    assert Path(CHART / "Chart.yaml").is_file()
