"""Kueue's quota arithmetic for the emulated admission controller, on the rendered ClusterQueue.

What a Workload asks for is what Kueue computes: per pod set, each container's requests (a
resource given only as a limit requests its limit, as the API server defaults it), times the pod
count. A ClusterQueue admits it when every requested resource is in a resource group's
``coveredResources`` and one flavor of that group has ``nominalQuota - usage`` left for all of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

Usage = dict[tuple[str, str], Decimal]
"""(flavor, resource) → quantity."""


def pod_set_requests(pod_sets: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Total requests of the pod sets, by resource name."""
    total: dict[str, Decimal] = defaultdict(Decimal)
    for pod_set in pod_sets:
        count = int(pod_set.get("count", 1))
        for container in pod_set["template"]["spec"].get("containers") or []:
            resources = container.get("resources") or {}
            merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
            for name, value in merged.items():
                total[name] += parse_quantity(value) * count
    return dict(total)


@dataclass
class Assignment:
    """Where a Workload's requests fit: the flavor per resource, or why nothing fits."""

    flavors: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=dict)
    reason: str = ""

    @property
    def fits(self) -> bool:
        return not self.reason


def assign(cluster_queue: dict[str, Any], requests: dict[str, Decimal], used: Usage) -> Assignment:
    """Flavors for ``requests`` within the ClusterQueue's nominal quotas (no borrowing)."""
    groups = (cluster_queue.get("spec") or {}).get("resourceGroups") or []
    name = cluster_queue["metadata"]["name"]
    result = Assignment()
    for resource in requests:
        if not any(resource in group.get("coveredResources", []) for group in groups):
            result.reason = (
                f"couldn't assign flavors to pod set main: resource {resource} unavailable in ClusterQueue {name}"
            )
            return result
    for group in groups:
        wanted = {r: q for r, q in requests.items() if r in group.get("coveredResources", [])}
        if not wanted:
            continue
        for flavor in group.get("flavors") or []:
            quota = {r["name"]: parse_quantity(r["nominalQuota"]) for r in flavor.get("resources") or []}
            if all(
                used.get((flavor["name"], r), Decimal(0)) + q <= quota.get(r, Decimal(0)) for r, q in wanted.items()
            ):
                for r, q in wanted.items():
                    result.flavors[r] = flavor["name"]
                    result.usage[(flavor["name"], r)] = q
                break
        else:
            short = ", ".join(sorted(r for r, q in wanted.items() if not _fits(group, r, q, used)))
            result.reason = (
                f"couldn't assign flavors to pod set main: insufficient quota for {short} in ClusterQueue {name}"
            )
            return result
    return result


def _fits(group: dict[str, Any], resource: str, quantity: Decimal, used: Usage) -> bool:
    """Whether any flavor of the group has room for ``quantity`` of ``resource`` alone."""
    for flavor in group.get("flavors") or []:
        quota = {r["name"]: parse_quantity(r["nominalQuota"]) for r in flavor.get("resources") or []}
        if used.get((flavor["name"], resource), Decimal(0)) + quantity <= quota.get(resource, Decimal(0)):
            return True
    return False


def add(total: Usage, usage: Usage, sign: int = 1) -> None:
    for key, quantity in usage.items():
        total[key] = total.get(key, Decimal(0)) + sign * quantity


def quantity_text(value: Decimal) -> str:
    """A quantity as Kubernetes prints a plain number (``resourceUsage`` in the admission)."""
    return format(value.normalize(), "f")
