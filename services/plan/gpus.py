"""GPU geometries: which MIG slices a GPU offers and whether one more fits beside the others.

The table is data, with its source: the NVIDIA MIG User Guide, "Supported MIG Profiles"
(https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html), the same
names DAS (openshift/instaslice-operator) advertises as ``nvidia.com/mig-<profile>``. A GPU has 7
compute slices and 8 memory slices; a profile ``Ng.Mgb`` takes N compute slices and a fixed share
of memory slices, and at most ``max`` instances of it exist on one GPU. The fit test checks those
three budgets, not NVIDIA's exact placement table (which forbids a few combinations the budgets
allow, e.g. some 4g + 3g layouts): an optimistic model of packing, stated as such in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMPUTE_SLICES = 7
MEMORY_SLICES = 8
WHOLE = "gpu"
"""The resource name of a whole GPU (``nvidia.com/gpu: 1``): all 7 compute slices."""


@dataclass(frozen=True)
class Profile:
    name: str
    compute: int
    memory: int
    max: int


def _profiles(rows: list[tuple[str, int, int, int]]) -> dict[str, Profile]:
    return {f"mig-{n}": Profile(f"mig-{n}", c, m, k) for n, c, m, k in rows}


GEOMETRIES: dict[str, dict[str, Profile]] = {
    "A100-40GB": _profiles(
        [("1g.5gb", 1, 1, 7), ("1g.10gb", 1, 2, 4), ("2g.10gb", 2, 2, 3), ("3g.20gb", 3, 4, 2),
         ("4g.20gb", 4, 4, 1), ("7g.40gb", 7, 8, 1)]
    ),
    "H100-80GB": _profiles(
        [("1g.10gb", 1, 1, 7), ("1g.20gb", 1, 2, 4), ("2g.20gb", 2, 2, 3), ("3g.40gb", 3, 4, 2),
         ("4g.40gb", 4, 4, 1), ("7g.80gb", 7, 8, 1)]
    ),
    "H200-141GB": _profiles(
        [("1g.18gb", 1, 1, 7), ("1g.35gb", 1, 2, 4), ("2g.35gb", 2, 2, 3), ("3g.71gb", 3, 4, 2),
         ("4g.71gb", 4, 4, 1), ("7g.141gb", 7, 8, 1)]
    ),
}  # fmt: skip


def profile_of(gpu_type: str, resource: str) -> Profile:
    """The profile a resource name stands for on ``gpu_type``; a whole GPU is the full 7g.

    A profile named for another GPU maps to this GPU's profile of the same shape (compute and
    memory slices): ``mig-1g.5gb`` of an A100-40GB is ``mig-1g.10gb`` on an H100-80GB, so a model →
    profile table written for one GPU type plans on the others.
    """
    profiles = GEOMETRIES[gpu_type]
    if resource == WHOLE:
        return max(profiles.values(), key=lambda p: p.compute)
    if resource in profiles:
        return profiles[resource]
    for other in GEOMETRIES.values():
        if resource in other:
            shape = (other[resource].compute, other[resource].memory)
            return next(p for p in profiles.values() if (p.compute, p.memory) == shape)
    known = ", ".join(profiles)
    raise ValueError(f"{resource!r} is not a MIG profile of {gpu_type}: choose from {known} or {WHOLE}")


@dataclass
class Gpu:
    """One physical GPU: either handed out whole, or carved into slices on demand (DAS)."""

    name: str
    gpu_type: str
    node: str
    slices: dict[str, str] = field(default_factory=dict)
    """Holder id → resource name of what runs on this GPU now."""
    compute: int = 0
    memory: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    """Totals of what ``slices`` holds, kept in step by :meth:`take` and :meth:`release`."""

    def fits(self, resource: str) -> bool:
        if resource == WHOLE or self.counts.get(WHOLE):
            return not self.slices
        profile = profile_of(self.gpu_type, resource)
        return (
            self.compute + profile.compute <= COMPUTE_SLICES
            and self.memory + profile.memory <= MEMORY_SLICES
            and self.counts.get(resource, 0) < profile.max
        )

    def take(self, holder: str, resource: str) -> None:
        self._count(resource, 1)
        self.slices[holder] = resource

    def release(self, holder: str) -> None:
        resource = self.slices.pop(holder, None)
        if resource is not None:
            self._count(resource, -1)

    def _count(self, resource: str, sign: int) -> None:
        profile = profile_of(self.gpu_type, resource)
        self.compute += sign * profile.compute
        self.memory += sign * profile.memory
        self.counts[resource] = self.counts.get(resource, 0) + sign
