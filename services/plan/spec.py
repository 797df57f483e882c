"""The cluster spec: what the planner simulates (GPUs, kube-scheduler, Kueue, DAS, Job creation,
kubescribe's own choices), as one validated file (YAML or JSON).

Every field has the default of the real component it models, so a small file describes a real
cluster: backoff 1 s doubling to 10 s and a 5-minute unschedulable flush are kube-scheduler's
(``podInitialBackoffSeconds``, ``podMaxBackoffSeconds``, ``podMaxInUnschedulablePodsDuration``);
queueing strategies, cohorts, borrowing/lending limits and preemption policies are Kueue's
ClusterQueue fields under their Kueue names. ``kubescribe plan schema DIR`` writes the JSON
Schema (:func:`schema_files`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.plan.errors import SpecError
from services.plan.gpus import GEOMETRIES

SPEC_SCHEMA_FILE = "kubescribe.plan.cluster.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuPool(_Strict):
    type: Literal["A100-40GB", "H100-80GB", "H200-141GB"] = Field(description="GPU model (its MIG geometry).")
    count: int = Field(ge=1, le=4096, description="How many GPUs of this type.")
    per_node: int = Field(8, ge=1, le=16, description="GPUs per node (names only; quotas are cluster-wide).")


class SchedulerSpec(_Strict):
    """kube-scheduler's scheduling queue for Pending pods."""

    initial_backoff_s: float = Field(1.0, ge=0, description="podInitialBackoffSeconds (default 1).")
    max_backoff_s: float = Field(10.0, ge=0, description="podMaxBackoffSeconds (default 10).")
    max_in_unschedulable_s: float = Field(300.0, ge=0, description="podMaxInUnschedulablePodsDuration (5 min).")
    flush_period_s: float = Field(30.0, gt=0, description="How often the leftover unschedulable pods are flushed.")
    requeue_on_completion: bool = Field(
        True, description="A finishing pod frees resources and moves unschedulable pods back (queueing hints)."
    )


class Preemption(_Strict):
    within_cluster_queue: Literal["Never", "LowerPriority"] = "Never"
    reclaim_within_cohort: Literal["Never", "LowerPriority", "Any"] = "Never"


class ClusterQueue(_Strict):
    name: str
    queueing_strategy: Literal["BestEffortFIFO", "StrictFIFO"] = "BestEffortFIFO"
    nominal_quota: dict[str, float] = Field(description="Resource name ('gpu', 'mig-1g.5gb', ...) → quota.")
    cohort: str | None = None
    borrowing_limit: dict[str, float] = Field(default_factory=dict, description="Max borrowed per resource.")
    lending_limit: dict[str, float] = Field(default_factory=dict, description="Max lent per resource.")
    preemption: Preemption = Field(default_factory=Preemption)


class KueueSpec(_Strict):
    enabled: bool = False
    cluster_queues: list[ClusterQueue] = Field(default_factory=list)
    local_queues: dict[str, str] = Field(default_factory=dict, description="LocalQueue → ClusterQueue.")
    queue_by_model: dict[str, str] = Field(default_factory=dict, description="Model → LocalQueue of its Jobs.")
    default_queue: str | None = Field(None, description="LocalQueue of Jobs whose model is not in queue_by_model.")
    priority_classes: dict[str, int] = Field(
        default_factory=dict, description="Trace priority (low/normal/high) → WorkloadPriorityClass value."
    )

    @model_validator(mode="after")
    def _queues_exist(self) -> KueueSpec:
        names = {cq.name for cq in self.cluster_queues}
        for lq, cq in self.local_queues.items():
            if cq not in names:
                raise ValueError(f"LocalQueue {lq!r} points at unknown ClusterQueue {cq!r}")
        for queue in [*self.queue_by_model.values(), *([self.default_queue] if self.default_queue else [])]:
            if queue not in self.local_queues:
                raise ValueError(f"unknown LocalQueue {queue!r}: declare it in local_queues")
        if self.enabled and not self.default_queue and not self.queue_by_model:
            raise ValueError("kueue.enabled needs default_queue or queue_by_model")
        return self


class WorkloadSpec(_Strict):
    """How a trace's recordings become pods' resource requests."""

    das: bool = Field(False, description="Request MIG slices created on demand (DAS) instead of whole GPUs.")
    profiles: dict[str, str] = Field(default_factory=dict, description="Model → MIG profile when das is on.")
    default_profile: str = "mig-3g.20gb"


class BurnerSpec(_Strict):
    """kube-burner's client-side rate limit on object creation."""

    qps: float = Field(1.0, gt=0)
    burst: int = Field(1, ge=1)


class KubescribeSpec(_Strict):
    """kubescribe's own choices: the real planner groups recordings into Jobs."""

    enabled: bool = Field(False, description="Off: one Job per trace item, created by kube-burner (the paper).")
    packing: bool = Field(True, description="Pack short recordings into one Job (the planner's default).")
    split_s: float | None = Field(None, gt=0, description="Split recordings longer than this into chunks.")
    model_cache: bool = Field(True, description="Models come from a node cache, not a per-pod download.")
    right_size: bool = Field(True, description="DAS profile from the planner's model → profile table.")
    dispatcher: dict[str, object] = Field(default_factory=dict, description="DispatcherSettings overrides.")


class ClusterSpec(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"title": "kubescribe plan cluster spec", "description": "A cluster to simulate."},
    )

    name: str = "cluster"
    gpus: list[GpuPool] = Field(min_length=1)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    kueue: KueueSpec = Field(default_factory=KueueSpec)
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    burner: BurnerSpec = Field(default_factory=BurnerSpec)
    kubescribe: KubescribeSpec = Field(default_factory=KubescribeSpec)

    @model_validator(mode="after")
    def _profiles_exist(self) -> ClusterSpec:
        if self.workload.das:
            known = sorted({name for profiles in GEOMETRIES.values() for name in profiles})
            for profile in {*self.workload.profiles.values(), self.workload.default_profile}:
                if profile not in known:
                    raise ValueError(f"unknown MIG profile {profile!r}: choose from {', '.join(known)}")
        return self


def load_spec(path: Path) -> ClusterSpec:
    """Read and validate a spec file; every problem is one line naming the field."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise SpecError(f"cannot read cluster spec {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<spec>'}: {err['msg']}" for err in exc.errors()[:4]
        )
        raise SpecError(f"{path}: invalid cluster spec: {problems}") from exc


def schema_files() -> dict[str, dict]:
    schema = ClusterSpec.model_json_schema()
    schema["$id"] = f"https://kubescribe.dev/schemas/{SPEC_SCHEMA_FILE}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return {SPEC_SCHEMA_FILE: schema}
