"""The Job manifest (``build_job``) validated against the Kubernetes schema, and its options."""

from __future__ import annotations

import kubernetes_validate
import pytest

from services.common.events import Priority
from services.common.settings import KubernetesSettings
from services.dispatcher.backends.manifests import build_job, job_name
from tests.k8s.conftest import make_job

KUBERNETES_VERSION = "1.33"


def validate_strict(manifest: dict) -> None:
    """kubernetes-validate in strict mode; a missing schema (its WARN for unknown kinds) is a failure too."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def settings(**overrides) -> KubernetesSettings:
    return KubernetesSettings().model_copy(update=overrides)


class TestBuildJob:
    @pytest.mark.parametrize("profile", ["mig-1g.5gb", "mig-3g.20gb", "cpu"])
    def test_validates_strictly(self, profile):
        validate_strict(build_job(make_job(profile=profile), settings()))

    def test_validates_with_every_option(self):
        manifest = build_job(
            make_job(),
            settings(
                model_cache_pvc="whisper-models",
                env_config_map="kubescribe-env",
                service_account="kubescribe-transcriber",
                node_selector={"nvidia.com/gpu.present": "true"},
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            ),
            owner={"apiVersion": "apps/v1", "kind": "Deployment", "name": "kubescribe-dispatcher", "uid": "1234"},
        )
        validate_strict(manifest)
        pod = manifest["spec"]["template"]["spec"]
        assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "whisper-models"}} in pod["volumes"]
        assert pod["containers"][0]["envFrom"][0] == {"configMapRef": {"name": "kubescribe-env"}}
        assert pod["serviceAccountName"] == "kubescribe-transcriber"

    def test_unknown_kind_is_not_silently_accepted(self):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            validate_strict({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "q"}})

    def test_should_request_a_mig_slice_for_das_profiles(self):
        resources = build_job(make_job(profile="mig-2g.10gb"), settings())["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]
        assert resources["limits"]["nvidia.com/mig-2g.10gb"] == "1"
        assert "cpu" not in resources["limits"]

    def test_should_not_request_a_mig_slice_without_das(self):
        for job, options in ((make_job(profile="cpu"), {}), (make_job(profile="mig-1g.5gb"), {"use_das": False})):
            container = build_job(job, settings(cpu="2", memory="3Gi", **options))["spec"]["template"]["spec"][
                "containers"
            ][0]
            assert container["resources"] == {
                "requests": {"cpu": "2", "memory": "3Gi", "ephemeral-storage": "1Gi"},
                "limits": {"cpu": "2", "memory": "3Gi", "ephemeral-storage": "10Gi"},
            }
            assert {"name": "KUBESCRIBE_WHISPER_DEVICE", "value": "cpu"} in container["env"]

    def test_should_use_the_tenant_queue_if_set(self):
        manifest = build_job(make_job(tenant="acme"), settings(tenant_queues={"acme": "acme-queue"}))
        assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "acme-queue"
        other = build_job(make_job(tenant="other"), settings(tenant_queues={"acme": "acme-queue"}))
        assert other["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kubescribe"

    def test_should_not_set_a_priority_class_if_not_mapped(self):
        manifest = build_job(make_job(priority=Priority.low), settings(priority_classes={"high": "urgent"}))
        assert "kueue.x-k8s.io/priority-class" not in manifest["metadata"]["labels"]
        manifest = build_job(make_job(priority=Priority.high), settings(priority_classes={"high": "urgent"}))
        assert manifest["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "urgent"

    def test_pod_is_not_kueue_managed_twice(self):
        """Kueue labels go on the Job only; a labelled pod would be managed as a plain pod too."""
        labels = build_job(make_job(), settings())["spec"]["template"]["metadata"]["labels"]
        assert not [k for k in labels if k.startswith("kueue.x-k8s.io/")]

    def test_hardening(self):
        manifest = build_job(make_job(), settings())
        spec = manifest["spec"]
        assert (
            spec["suspend"],
            spec["backoffLimit"],
            spec["activeDeadlineSeconds"],
            spec["ttlSecondsAfterFinished"],
        ) == (
            True,
            0,
            3600,
            600,
        )
        container = spec["template"]["spec"]["containers"][0]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    def test_should_set_job_pod_settings(self):
        manifest = build_job(
            make_job(),
            settings(
                image_pull_secrets=["registry-creds"],
                affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
                ephemeral_storage_request="2Gi",
                ephemeral_storage_limit="12Gi",
                tmp_size_limit="11Gi",
                otel_resource_attributes="deployment.environment=prod",
            ),
        )
        validate_strict(manifest)
        pod = manifest["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
        assert pod["affinity"] == {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "11Gi"}} in pod["volumes"]
        [container] = pod["containers"]
        assert container["resources"]["requests"]["ephemeral-storage"] == "2Gi"
        assert container["resources"]["limits"]["ephemeral-storage"] == "12Gi"
        attributes = next(e["value"] for e in container["env"] if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        assert attributes.endswith(",deployment.environment=prod") and "k8s.job.name=" in attributes

    def test_should_not_hide_the_image_models_without_a_cache(self):
        """No PVC: nothing mounted over the download root, so models baked into the image are found."""
        pod = build_job(make_job(), settings())["spec"]["template"]["spec"]
        assert [v["name"] for v in pod["volumes"]] == ["tmp"]
        [container] = pod["containers"]
        assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["KUBESCRIBE_WHISPER_DOWNLOAD_ROOT"] == "/var/cache/kubescribe/models"

    def test_should_not_set_job_pod_settings_if_not_set(self):
        pod = build_job(make_job(), settings())["spec"]["template"]["spec"]
        assert "imagePullSecrets" not in pod and "affinity" not in pod
        attributes = next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        assert not attributes.endswith(",")

    def test_openshift_omits_fixed_ids(self):
        """restricted-v2 rejects a pod that pins runAsUser/runAsGroup/fsGroup outside the namespace range."""
        manifest = build_job(make_job(), settings(openshift=True))
        validate_strict(manifest)
        pod = manifest["spec"]["template"]["spec"]
        contexts = [pod["securityContext"], pod["containers"][0]["securityContext"]]
        assert not [k for c in contexts for k in c if k in {"runAsUser", "runAsGroup", "fsGroup"}]
        assert all(c["runAsNonRoot"] is True for c in contexts)
        fixed = build_job(make_job(), settings())["spec"]["template"]["spec"]
        assert (fixed["securityContext"]["runAsUser"], fixed["securityContext"]["fsGroup"]) == (10001, 10001)

    def test_disruptions_are_ignored_and_failures_go_to_the_dispatcher(self):
        spec = build_job(make_job(), settings(backoff_limit=3))["spec"]
        assert spec["backoffLimit"] == 3
        rules = spec["podFailurePolicy"]["rules"]
        assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
        [fail] = [r for r in rules if r["action"] == "FailJob"]
        assert fail["onExitCodes"] == {"containerName": "transcriber", "operator": "NotIn", "values": [0]}
        assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it

    @pytest.mark.parametrize("job_id", ["01jabcdefghjkmnpqrstvwxyz0", "Tenant/Upper_Case.id", "x" * 80])
    def test_job_names_are_valid_and_stable(self, job_id):
        name = job_name(job_id)
        assert name == job_name(job_id)
        assert len(name) <= 63
        assert name.replace("-", "").isalnum() and name == name.lower()
        assert job_name(job_id) != job_name(job_id + "y")

    def test_should_not_involve_kueue_if_not_used(self):
        manifest = build_job(make_job(priority=Priority.high), settings(use_kueue=False))
        validate_strict(manifest)
        assert manifest["spec"]["suspend"] is False
        assert not [k for k in manifest["metadata"]["labels"] if k.startswith("kueue.x-k8s.io/")]


class TestObserve:
    """The state of a job from its Job and Workload objects (pure; the backend test drives it live)."""

    def job(self, spec=None, status=None):
        return {"metadata": {"name": "j"}, "spec": {"suspend": True, **(spec or {})}, "status": status or {}}

    def cond(self, kind, reason="r"):
        return {"type": kind, "status": "True", "reason": reason, "lastTransitionTime": "2026-01-01T00:00:00Z"}

    def test_states(self):
        from services.dispatcher.backends.kubernetes import observe
        from services.dispatcher.domain import JobState

        unsuspended = {"suspend": False}
        admitted = {"status": {"conditions": [self.cond("QuotaReserved"), self.cond("Admitted")]}}
        cases = [
            (self.job(), None, JobState.queued),
            (self.job(), {"status": {"conditions": [self.cond("QuotaReserved")]}}, JobState.queued),
            (self.job(), admitted, JobState.admitted),
            (self.job(unsuspended, {"active": 1, "ready": 0}), admitted, JobState.admitted),  # waiting for its slice
            (self.job(unsuspended, {"active": 1, "ready": 1}), admitted, JobState.running),
            (self.job(unsuspended, {"conditions": [self.cond("Complete")]}), admitted, JobState.succeeded),
            (
                self.job(unsuspended, {"conditions": [self.cond("Failed", "BackoffLimitExceeded")]}),
                None,
                JobState.failed,
            ),
            (self.job(), {"status": {"conditions": [self.cond("Evicted", "Preempted")]}}, JobState.evicted),
            (
                self.job(unsuspended, {"conditions": [self.cond("Complete")]}),
                {"status": {"conditions": [self.cond("Finished"), self.cond("Evicted")]}},
                JobState.succeeded,
            ),
        ]
        for job, workload, expected in cases:
            assert observe(job, workload).state is expected, (job, workload)
