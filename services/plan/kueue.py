"""Kueue admission, pure: which pending Workloads a ClusterQueue admits now, and whom it preempts.

The semantics are Kueue's (kubernetes-sigs/kueue, ``pkg/scheduler`` and the ClusterQueue API):

- a Workload is admitted when its ClusterQueue's usage plus its request fits the nominal quota,
  or, in a cohort, when the rest can be borrowed: at most ``borrowingLimit`` above nominal, out
  of the cohort's lendable pool (each member lends at most ``lendingLimit`` of its quota, and
  keeps ``nominal - lendingLimit`` for itself);
- pending Workloads are ordered by priority (WorkloadPriorityClass value), then creation time;
  ``StrictFIFO`` stops at the first head that does not fit, ``BestEffortFIFO`` tries the next;
- preemption: ``withinClusterQueue: LowerPriority`` evicts lower-priority Workloads of the same
  ClusterQueue; ``reclaimWithinCohort`` evicts Workloads of other ClusterQueues that are
  borrowing, when the preemptor would fit its own nominal quota. Lowest priority and most
  recently admitted go first; an evicted Workload goes back to pending and restarts from zero.

Time is not here: the simulation calls :meth:`Admission.cycle` on every event that can change
the answer (a Workload created, finished or evicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.plan.spec import ClusterQueue, KueueSpec


@dataclass
class Workload:
    id: str
    cluster_queue: str
    resource: str
    priority: int
    created: float
    amount: float = 1.0
    admitted_at: float | None = None


@dataclass
class Admission:
    spec: KueueSpec
    pending: dict[str, list[Workload]] = field(default_factory=dict)
    admitted: dict[str, Workload] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queues: dict[str, ClusterQueue] = {cq.name: cq for cq in self.spec.cluster_queues}
        self.pending = {name: [] for name in self.queues}
        self.usage: dict[tuple[str, str], float] = {}
        """(ClusterQueue, resource) → admitted amount, kept in step with ``admitted``."""

    def _hold(self, workload: Workload, sign: float) -> None:
        key = (workload.cluster_queue, workload.resource)
        self.usage[key] = self.usage.get(key, 0.0) + sign * workload.amount

    def queue_of(self, local_queue: str) -> str:
        return self.spec.local_queues[local_queue]

    # --- events -------------------------------------------------------------------------------
    def submit(self, workload: Workload) -> None:
        self.pending[workload.cluster_queue].append(workload)

    def finish(self, workload_id: str) -> None:
        workload = self.admitted.pop(workload_id, None)
        if workload is not None:
            self._hold(workload, -1.0)

    def cycle(self, now: float) -> tuple[list[Workload], list[Workload]]:
        """Admit what fits, in Kueue's order; returns (admitted, preempted)."""
        admitted: list[Workload] = []
        preempted: list[Workload] = []
        again = True
        while again:  # once more only after a preemption put workloads back in a queue
            again = False
            for name in sorted(self.queues):
                queue = sorted(self.pending[name], key=lambda w: (-w.priority, w.created))
                seen = {w.id for w in queue}
                refused: set[tuple[str, float, int]] = set()
                kept: list[Workload] = []
                for index, workload in enumerate(queue):
                    shape = (workload.resource, workload.amount, workload.priority)
                    victims = None if shape in refused else [] if self._fits(workload) else self._victims(workload)
                    if victims is None:  # the same request already did not fit in this pass: skip it too
                        refused.add(shape)
                        kept.append(workload)
                        if self.queues[name].queueing_strategy == "StrictFIFO":
                            kept.extend(queue[index + 1 :])
                            break
                        continue
                    for victim in victims:
                        self.admitted.pop(victim.id)
                        self._hold(victim, -1.0)
                        victim.admitted_at = None
                        self.pending[victim.cluster_queue].append(victim)
                        preempted.append(victim)
                        again = True
                    workload.admitted_at = now
                    self.admitted[workload.id] = workload
                    self._hold(workload, 1.0)
                    admitted.append(workload)
                self.pending[name] = kept + [w for w in self.pending[name] if w.id not in seen]
        return admitted, preempted

    # --- quota ----------------------------------------------------------------------------------
    def _usage(self, queue: str, resource: str, without: frozenset[str] = frozenset()) -> float:
        usage = self.usage.get((queue, resource), 0.0)
        if without:
            usage -= sum(
                w.amount
                for w in self.admitted.values()
                if w.id in without and w.cluster_queue == queue and w.resource == resource
            )
        return usage

    def _members(self, queue: ClusterQueue) -> list[ClusterQueue]:
        if queue.cohort is None:
            return [queue]
        return [q for q in self.queues.values() if q.cohort == queue.cohort]

    def _fits(self, workload: Workload, without: frozenset[str] = frozenset()) -> bool:
        queue = self.queues[workload.cluster_queue]
        resource = workload.resource
        nominal = queue.nominal_quota.get(resource, 0.0)
        wanted = self._usage(queue.name, resource, without) + workload.amount
        if queue.cohort is None:
            return wanted <= nominal
        if wanted - nominal > queue.borrowing_limit.get(resource, float("inf")):
            return False
        # In a cohort even nominal quota may be lent out: the cohort's pool decides.
        pool = used = 0.0
        for member in self._members(queue):
            member_nominal = member.nominal_quota.get(resource, 0.0)
            lendable = min(member_nominal, member.lending_limit.get(resource, member_nominal))
            usage = wanted if member.name == queue.name else self._usage(member.name, resource, without)
            pool += lendable
            used += max(0.0, usage - (member_nominal - lendable))
        return used <= pool

    def _victims(self, workload: Workload) -> list[Workload] | None:
        """The Workloads whose eviction lets ``workload`` in, per the preemption policies; None if none do."""
        queue = self.queues[workload.cluster_queue]
        if queue.preemption.within_cluster_queue == "Never" and queue.preemption.reclaim_within_cohort == "Never":
            return None
        candidates: list[Workload] = []
        if queue.preemption.within_cluster_queue == "LowerPriority":
            candidates += [
                w
                for w in self.admitted.values()
                if w.cluster_queue == queue.name and w.resource == workload.resource and w.priority < workload.priority
            ]
        policy = queue.preemption.reclaim_within_cohort
        nominal = queue.nominal_quota.get(workload.resource, 0.0)
        own = self._usage(queue.name, workload.resource) + workload.amount
        if policy != "Never" and queue.cohort is not None and own <= nominal:
            for member in self._members(queue):
                if member.name == queue.name:
                    continue
                borrowing = self._usage(member.name, workload.resource) > member.nominal_quota.get(
                    workload.resource, 0.0
                )
                if borrowing:
                    candidates += [
                        w
                        for w in self.admitted.values()
                        if w.cluster_queue == member.name
                        and w.resource == workload.resource
                        and (policy == "Any" or w.priority < workload.priority)
                    ]
        candidates.sort(key=lambda w: (w.priority, -(w.admitted_at or 0.0)))
        chosen: list[Workload] = []
        for candidate in candidates:
            chosen.append(candidate)
            if self._fits(workload, frozenset(w.id for w in chosen)):
                return chosen
        return None
