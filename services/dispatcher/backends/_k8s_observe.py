"""Pure observation: the state of one job from its Job and Kueue Workload objects.

No API calls and no threads here, so each rule is testable on a dict (``tests/k8s/test_manifests.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.dispatcher.domain import TERMINAL_STATES, JobState

_RANK = {JobState.queued: 0, JobState.admitted: 1, JobState.running: 2}
_TERMINAL_RANK = 3


@dataclass(frozen=True)
class Observation:
    """What the cluster says about one job right now."""

    state: JobState
    at: datetime | None = None
    reason: str | None = None
    exit_code: int | None = None


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's conditions whose status is True, by type."""
    found = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if c.get("status") == "True" and "type" in c}


def is_finished(job: dict[str, Any]) -> bool:
    """A Job that completed, failed or is being deleted: not active any more."""
    meta = job.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or bool({"Complete", "Failed"} & set(conditions(job)))


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _describe(condition: dict[str, Any]) -> str:
    parts = [p for p in (condition.get("reason"), condition.get("message")) if p]
    return ": ".join(parts) or condition.get("type", "")


def observe(job: dict[str, Any], workload: dict[str, Any] | None) -> Observation:
    """The state of a job from its Job and (optional) Kueue Workload objects.

    The Job's own conditions are authoritative for the outcome; the Workload tells admission
    and eviction, which the Job alone cannot (an evicted Job is merely suspended again).
    """
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    job_conditions = conditions(job)
    if "Complete" in job_conditions:
        cond = job_conditions["Complete"]
        return Observation(
            JobState.succeeded, _time(status.get("completionTime") or cond.get("lastTransitionTime")), exit_code=0
        )
    if "Failed" in job_conditions:
        cond = job_conditions["Failed"]
        return Observation(JobState.failed, _time(cond.get("lastTransitionTime")), reason=_describe(cond))
    wl_conditions = conditions(workload) if workload else {}
    if "Finished" not in wl_conditions:
        for kind in ("Preempted", "Evicted"):
            if kind in wl_conditions:
                cond = wl_conditions[kind]
                return Observation(
                    JobState.evicted, _time(cond.get("lastTransitionTime")), reason=f"{kind}: {_describe(cond)}"
                )
    # ``ready`` counts pods whose containers run (a pod waiting for its DAS slice is only
    # ``active``); API servers before 1.24 report no ``ready``, so fall back to ``active`` there.
    ready = status.get("ready")
    started = ready > 0 if ready is not None else bool(status.get("active"))
    if not spec.get("suspend") and started:
        return Observation(JobState.running, _time(status.get("startTime")))
    if "Admitted" in wl_conditions:
        cond = wl_conditions["Admitted"]
        return Observation(JobState.admitted, _time(cond.get("lastTransitionTime")), reason=_describe(cond))
    if spec.get("suspend") is False:
        # Kueue unsuspends a Job when it admits it; without a Workload that is our only sign.
        return Observation(JobState.admitted, _time(status.get("startTime")))
    return Observation(JobState.queued, _time((job.get("metadata") or {}).get("creationTimestamp")))


def rank(state: JobState) -> int:
    """Order of states along a job's life: a report never goes back."""
    return _TERMINAL_RANK if state in TERMINAL_STATES else _RANK[state]


def skipped(old: JobState, new: JobState) -> list[JobState]:
    """Non-queued states strictly between ``old`` and ``new`` (a watch may miss some)."""
    return [s for s, r in _RANK.items() if rank(old) < r < rank(new) and s is not JobState.queued]
