"""The chart's answers to issue 12's defects, one class per concern, each in should/should-not pairs.

Jobs are built with ``build_job`` from the dispatcher's rendered environment, so every Job
setting is checked end to end: values → chart → settings → manifest.
"""

from __future__ import annotations

import json
from typing import ClassVar

import helm_python as helm
import pytest
import yaml

from services.common.events import Priority
from services.common.settings import DispatcherSettings, KubernetesSettings, LlmSettings
from services.dispatcher.backends.manifests import build_job
from tests.charts.conftest import CHART, NAMESPACE, RELEASE, container_env, find, load_values, one, render, render_files
from tests.k8s.conftest import make_job

FULLNAME = f"{RELEASE}-kubescribe"


def deployment(objects, component):
    return one(objects, "Deployment", f"{FULLNAME}-{component}")


def dispatcher_env(objects) -> dict[str, str]:
    return container_env(deployment(objects, "dispatcher"))


def job_from_chart(objects, monkeypatch, **job) -> dict:
    """The Job the dispatcher would create with the rendered settings."""
    for name, value in dispatcher_env(objects).items():
        monkeypatch.setenv(name, value)
    return build_job(make_job(**job), KubernetesSettings())


def notes(values=None) -> str:
    return next(v for k, v in render_files(values).items() if k.endswith("NOTES.txt"))


class TestJobPods:
    """Defects 5, 6, 10, 15 (/tmp, OTEL): what the Job pod gets from the chart."""

    def test_should_pass_service_account_pull_secrets_affinity_storage(self, monkeypatch):
        affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        objects = render(
            {
                "imagePullSecrets": [{"name": "registry-creds"}],
                "transcriber": {"affinity": affinity, "tmpSizeLimit": "5Gi"},
                "telemetry": {"resourceAttributes": "deployment.environment=prod"},
            }
        )
        job = job_from_chart(objects, monkeypatch)
        pod = job["spec"]["template"]["spec"]
        sa = one(objects, "ServiceAccount", f"{FULLNAME}-transcriber")
        assert pod["serviceAccountName"] == sa["metadata"]["name"] and sa["automountServiceAccountToken"] is False
        assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
        assert pod["affinity"] == affinity
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "5Gi"}} in pod["volumes"]
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["ephemeral-storage"] == "1Gi"
        assert resources["limits"]["ephemeral-storage"] == "10Gi"
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert env["OTEL_RESOURCE_ATTRIBUTES"].endswith(",deployment.environment=prod")

    def test_should_not_set_pull_secrets_or_affinity_if_not_set(self, monkeypatch):
        pod = job_from_chart(render(), monkeypatch)["spec"]["template"]["spec"]
        assert "imagePullSecrets" not in pod and "affinity" not in pod
        assert pod["serviceAccountName"] == f"{FULLNAME}-transcriber"  # never the namespace's default

    def test_should_use_an_existing_service_account_if_set(self, monkeypatch):
        objects = render({"transcriber": {"serviceAccountName": "gpu-jobs"}})
        assert find(objects, "ServiceAccount", f"{FULLNAME}-transcriber") == []
        assert job_from_chart(objects, monkeypatch)["spec"]["template"]["spec"]["serviceAccountName"] == "gpu-jobs"

    def test_disruptions_are_ignored_with_retries_for_pods_that_never_ran(self, monkeypatch):
        spec = job_from_chart(render(), monkeypatch)["spec"]
        assert spec["backoffLimit"] > 0
        assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in spec[
            "podFailurePolicy"
        ]["rules"]

    def test_openshift_omits_fixed_ids_everywhere(self, monkeypatch):
        objects = render(load_values(CHART / "ci" / "openshift-das-h100-values.yaml"))
        fixed = {"runAsUser", "runAsGroup", "fsGroup"}
        pods = [d["spec"]["template"]["spec"] for d in find(objects, "Deployment")]
        pods += [j["spec"]["template"]["spec"] for j in find(objects, "Job")]
        pods.append(job_from_chart(objects, monkeypatch, profile="mig-1g.10gb")["spec"]["template"]["spec"])
        for pod in pods:
            contexts = [pod["securityContext"]] + [c["securityContext"] for c in pod["containers"]]
            assert not [k for c in contexts for k in c if k in fixed]
            assert pod["securityContext"]["runAsNonRoot"] is True

    def test_should_pin_uids_if_not_openshift(self, monkeypatch):
        objects = render()
        assert deployment(objects, "ingest")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
        job = job_from_chart(objects, monkeypatch)
        assert job["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001

    def test_gpu_jobs_use_the_cuda_image(self):
        gpu = dispatcher_env(render({"transcriber": {"useDas": True}}))
        cpu = dispatcher_env(render({"transcriber": {"useDas": False}}))
        assert gpu["KUBESCRIBE_KUBERNETES_IMAGE"] == "ghcr.io/kubescribe/kubescribe:0.1.0-cuda12"
        assert cpu["KUBESCRIBE_KUBERNETES_IMAGE"] == "ghcr.io/kubescribe/kubescribe:0.1.0"


class TestProfilesAndQuotas:
    """Defect 9: every model's profile is explicit and admitted by the ClusterQueue."""

    @pytest.mark.parametrize(
        ("product", "small", "large"),
        [
            ("a100-40gb", "mig-1g.5gb", "mig-3g.20gb"),
            ("a100-80gb", "mig-1g.10gb", "mig-3g.40gb"),
            ("h100-80gb", "mig-1g.10gb", "mig-3g.40gb"),
            ("h100-94gb", "mig-1g.12gb", "mig-3g.47gb"),
            ("h200-141gb", "mig-1g.18gb", "mig-3g.71gb"),
        ],
    )
    def test_presets_map_models_and_quotas(self, product, small, large, monkeypatch):
        objects = render({"gpu": {"product": product}, "dispatcher": {"tenantModels": {"acme": "large-v3"}}})
        for name, value in dispatcher_env(objects).items():
            monkeypatch.setenv(name, value)
        profiles = DispatcherSettings().profiles
        assert (profiles["tiny.en"], profiles["large-v3"]) == (small, large)
        [group] = one(objects, "ClusterQueue")["spec"]["resourceGroups"]
        assert {f"nvidia.com/{small}", f"nvidia.com/{large}"} <= set(group["coveredResources"])
        job = build_job(make_job(profile=profiles["large-v3"]), KubernetesSettings())
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][f"nvidia.com/{large}"] == "1"

    def test_a_profile_the_queue_does_not_list_fails_the_render(self):
        with pytest.raises(helm.HelmError, match=r'model "large-v3" runs on mig-3g.20gb, which .*does not list'):
            render(
                {
                    "dispatcher": {"tenantModels": {"acme": "large-v3"}},
                    "kueue": {"clusterQueue": {"migProfiles": {"mig-1g.5gb": 7}}},
                }
            )

    def test_a_model_without_a_profile_fails_the_render(self):
        with pytest.raises(helm.HelmError, match=r'model "my-finetune" has no MIG profile'):
            render({"dispatcher": {"defaultModel": "my-finetune"}})
        render({"dispatcher": {"defaultModel": "my-finetune", "profiles": {"my-finetune": "mig-2g.10gb"}}})

    def test_should_not_check_quotas_for_cpu_jobs(self):
        render({"transcriber": {"useDas": False}, "kueue": {"clusterQueue": {"migProfiles": {"mig-1g.5gb": 1}}}})


class TestModelCache:
    """Defects 3 and 11: a cache that binds everywhere and gets filled."""

    def test_should_default_to_read_write_once(self):
        pvc = one(render({"transcriber": {"modelCache": {"enabled": True}}}), "PersistentVolumeClaim")
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]

    def test_should_prefetch_every_configured_model_except_the_bundled_one(self):
        values = {
            "transcriber": {"modelCache": {"enabled": True}},
            "dispatcher": {"defaultModel": "tiny.en", "tenantModels": {"acme": "small.en", "beta": "medium.en"}},
        }
        objects = render(values)
        [job] = find(objects, "Job")
        assert job["metadata"]["name"].startswith(f"{FULLNAME}-model-prefetch-")
        # A release object, not a hook: its pod binds a WaitForFirstConsumer PVC during `helm --wait`.
        assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
        other = render({**values, "dispatcher": {"defaultModel": "tiny.en", "tenantModels": {"acme": "large-v3"}}})
        assert one(other, "Job")["metadata"]["name"] != job["metadata"]["name"]  # Job specs are immutable
        pod = job["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert "command" not in container
        assert container["args"][-2:] == ["medium.en", "small.en"] and "tiny.en" not in container["args"]
        # Go map order is random: every render of the same values names the same Job.
        assert {one(render(values), "Job")["metadata"]["name"] for _ in range(5)} == {job["metadata"]["name"]}
        assert {"name": "HF_HUB_OFFLINE", "value": "0"} in container["env"]
        claim = one(objects, "PersistentVolumeClaim")["metadata"]["name"]
        assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
        assert container["args"][3] == "/var/cache/kubescribe/models"  # the Jobs' download root

    def test_should_not_prefetch_if_off_or_nothing_to_fetch(self):
        on = {"transcriber": {"modelCache": {"enabled": True, "prefetch": {"enabled": False}}}}
        assert find(render(on), "Job") == []
        assert find(render({"transcriber": {"modelCache": {"enabled": True}}}), "Job") == []  # tiny.en only
        assert find(render(), "Job") == []


class TestCapabilities:
    """Defect 12: CRD-backed objects only where the API is served; the rest is said in NOTES."""

    CRD_KINDS: ClassVar[set[str]] = {
        "ClusterQueue",
        "LocalQueue",
        "ResourceFlavor",
        "WorkloadPriorityClass",
        "ScaledObject",
        "InferencePool",
        "HTTPRoute",
        "InferenceObjective",
        "ServiceMonitor",
    }

    def test_should_skip_every_crd_object_on_a_bare_cluster_and_say_so(self):
        values = load_values(CHART / "ci" / "no-crds-values.yaml")
        objects = render(values)
        assert {o["kind"] for o in objects} & self.CRD_KINDS == set()
        assert "replicas" in deployment(objects, "dispatcher")["spec"]  # KEDA absent: replicaCount
        text = notes(values)
        for api in ("kueue.x-k8s.io/v1beta2", "keda.sh/v1alpha1", "inference.networking.k8s.io/v1"):
            assert api in text
        assert text.count("SKIPPED:") == 6

    def test_kueue_v1beta1_only_is_skipped_not_failed(self):
        values = {"capabilities": {"apiVersions": ["kueue.x-k8s.io/v1beta1", "keda.sh/v1alpha1"]}}
        objects = render(values)
        assert find(objects, "ClusterQueue") == [] and find(objects, "ScaledObject")
        assert "Kueue >= 0.15" in notes(values)

    def test_should_render_crd_objects_where_served_and_say_nothing(self):
        assert "SKIPPED" not in notes()
        assert {"ClusterQueue", "ScaledObject"} <= {o["kind"] for o in render()}


class TestClusterScopedNames:
    """Defect 15: two releases never collide on cluster-scoped objects."""

    def test_two_releases_have_distinct_cluster_scoped_objects(self):
        chart = helm.Chart.load(CHART)
        values = {"capabilities": {"apiVersions": ["kueue.x-k8s.io/v1beta2"]}}
        names = []
        for release in ("alpha", "beta"):
            files = chart.render(values, name=release, namespace="ns", is_install=True)
            docs = [
                d for path, text in files.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text)
            ]
            scoped = {d["kind"]: d["metadata"]["name"] for d in docs if d and "namespace" not in d["metadata"]}
            assert set(scoped) == {"ClusterQueue", "ResourceFlavor", "WorkloadPriorityClass"}
            assert all(name.startswith(f"{release}-") for name in scoped.values())
            names.append(set(scoped.values()))
        assert not names[0] & names[1]


class TestLlmD:
    """Defects 7 and 8."""

    def test_gateway_and_dev_model_server_are_independent(self):
        values = load_values(CHART / "ci" / "dev-model-server-values.yaml")
        values["llm"] = {"baseUrl": "http://gw.gateway-system.svc/v1"}
        objects = render(values)
        assert container_env(deployment(objects, "summarizer"))["KUBESCRIBE_LLM_BASE_URL"] == values["llm"]["baseUrl"]
        assert deployment(objects, "llm-sim") and one(objects, "InferencePool") and one(objects, "HTTPRoute")

    def test_should_create_one_objective_per_priority_beside_an_existing_pool(self, monkeypatch):
        objects = render(load_values(CHART / "ci" / "llm-d-existing-values.yaml"))
        objectives = find(objects, "InferenceObjective")
        assert {o["apiVersion"] for o in objectives} == {"llm-d.ai/v1alpha2"}
        assert {o["spec"]["poolRef"]["name"] for o in objectives} == {"gaie-inference-scheduling"}
        assert {o["metadata"]["namespace"] for o in objectives} == {"llm-d"}
        by_priority = {o["metadata"]["labels"]["kubescribe.dev/priority"]: o for o in objectives}
        assert by_priority["high"]["spec"]["priority"] > by_priority["normal"]["spec"]["priority"]
        for name, value in container_env(deployment(objects, "summarizer")).items():
            monkeypatch.setenv(name, value)
        headers = LlmSettings().objectives  # what the summarizer sends as x-llm-d-inference-objective
        assert {headers[p.value] for p in Priority} == {o["metadata"]["name"] for o in objectives}

    def test_should_not_create_objectives_if_not_enabled(self):
        assert find(render(), "InferenceObjective") == []

    def test_objectives_need_a_pool(self):
        with pytest.raises(helm.HelmError, match=r"poolName"):
            render({"llmd": {"inferenceObjectives": {"enabled": True}}})


class TestSecureByDefault:
    """Defect 14 and the operations objects."""

    def test_bundled_nats_reads_the_generated_password(self):
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        env = values["nats"]["container"]["env"]["KUBESCRIBE_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert env["key"] == "KUBESCRIBE_NATS_PASSWORD"
        assert env["name"] == {"$tplYaml": '{{ include "kubescribe.natsAuthSecretName" . }}'}
        assert values["nats"]["config"]["merge"]["authorization"]["password"] == "<< $KUBESCRIBE_NATS_PASSWORD >>"
        assert one(render(), "Secret", f"{RELEASE}-nats-auth")  # the name that include gives

    def test_should_not_invent_credentials_for_an_external_nats(self):
        values = {"nats": {"enabled": False}, "externalNats": {"url": "nats://n:4222", "monitoringEndpoint": "n:8222"}}
        assert one(render(values), "Secret", f"{RELEASE}-nats-auth")["stringData"] == {
            "KUBESCRIBE_NATS_URL": "nats://n:4222"
        }

    def test_user_mismatch_fails_the_render(self):
        with pytest.raises(helm.HelmError, match=r"natsAuth\.user"):
            render({"natsAuth": {"user": "someone"}})

    def test_network_policies(self):
        objects = render()
        policies = {p["metadata"]["name"]: p for p in find(objects, "NetworkPolicy")}
        nats = policies[f"{FULLNAME}-nats"]["spec"]["ingress"]
        client = next(rule for rule in nats if rule["ports"] == [{"port": 4222, "protocol": "TCP"}])
        assert client["from"] == [
            {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": "kubescribe"}
                }
            }
        ]
        sim = policies[f"{FULLNAME}-llm-sim"]["spec"]["ingress"][0]["from"][0]
        assert sim["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "summarizer"
        # Job pods carry the labels the NATS policy admits.
        job_labels = build_job(make_job(), KubernetesSettings(instance=RELEASE))["spec"]["template"]["metadata"][
            "labels"
        ]
        assert client["from"][0]["podSelector"]["matchLabels"].items() <= job_labels.items()

    def test_should_not_render_network_policies_if_off(self):
        assert find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []

    def test_pod_disruption_budgets(self):
        budgets = find(render(), "PodDisruptionBudget")
        assert {b["metadata"]["name"] for b in budgets} == {
            f"{FULLNAME}-{c}" for c in ("ingest", "dispatcher", "summarizer")
        }
        assert find(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []

    def test_monitors_and_dashboard(self):
        objects = render(load_values(CHART / "ci" / "monitoring-values.yaml"))
        monitor = one(objects, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert one(objects, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
        dashboard = one(objects, "ConfigMap", f"{FULLNAME}-dashboard")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        panels = json.loads(dashboard["data"]["kubescribe.json"])["panels"]
        exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
        for metric in ("admission_wait_seconds", "queue_wait_seconds", "pending_recordings", "generation_seconds"):
            assert metric in exprs
        default = render()
        assert not find(default, "ServiceMonitor") and not find(default, "PodMonitor")
        assert not find(default, "ConfigMap", f"{FULLNAME}-dashboard")


def test_namespace_is_the_release_namespace():
    assert all(o["metadata"].get("namespace", NAMESPACE) in (NAMESPACE, "llm-d") for o in render())
