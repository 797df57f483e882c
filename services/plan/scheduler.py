"""kube-scheduler's queue for Pending pods, pure: activeQ, backoffQ and the unschedulable set.

A pod that does not fit goes to the unschedulable set with a backoff of
``initial_backoff_s * 2^(attempts-1)`` capped at ``max_backoff_s``. It leaves the set when a
cluster event may make it fit (a pod finishing frees a GPU; with ``requeue_on_completion``) or
when it has sat there ``max_in_unschedulable_s`` (the periodic flush); either way it is tried
again only once its backoff has expired. That is why, without Kueue, a freed GPU can sit idle
for up to the backoff before the next Pending pod takes it. Order within activeQ: priority,
then the time the pod was queued (the default ``PrioritySort``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.plan.spec import SchedulerSpec


@dataclass
class QueuedPod:
    key: str
    priority: int
    queued_at: float
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float | None = None


@dataclass
class SchedulingQueue:
    spec: SchedulerSpec
    active: dict[str, QueuedPod] = field(default_factory=dict)
    backoff: dict[str, QueuedPod] = field(default_factory=dict)
    unschedulable: dict[str, QueuedPod] = field(default_factory=dict)

    def add(self, pod: QueuedPod) -> None:
        self.active[pod.key] = pod

    def remove(self, key: str) -> None:
        for queue in (self.active, self.backoff, self.unschedulable):
            queue.pop(key, None)

    def pop_ready(self, now: float) -> list[QueuedPod]:
        """Pods to try now, in scheduling order (backoff expiries move to activeQ first)."""
        for key, pod in list(self.backoff.items()):
            if pod.backoff_until <= now:
                self.active[key] = self.backoff.pop(key)
        ready = sorted(self.active.values(), key=lambda p: (-p.priority, p.queued_at))
        self.active.clear()
        return ready

    def failed(self, pod: QueuedPod, now: float) -> None:
        """The pod did not fit anywhere: unschedulable, with its next backoff."""
        pod.attempts += 1
        delay = min(self.spec.initial_backoff_s * 2 ** (pod.attempts - 1), self.spec.max_backoff_s)
        pod.backoff_until = now + delay
        pod.unschedulable_since = now
        self.unschedulable[pod.key] = pod

    def _requeue(self, pod: QueuedPod, now: float) -> None:
        del self.unschedulable[pod.key]
        (self.backoff if pod.backoff_until > now else self.active)[pod.key] = pod

    def on_resources_freed(self, now: float) -> None:
        if self.spec.requeue_on_completion:
            for pod in list(self.unschedulable.values()):
                self._requeue(pod, now)

    def flush(self, now: float) -> None:
        """The periodic flush of pods left unschedulable for too long."""
        for pod in list(self.unschedulable.values()):
            if (
                pod.unschedulable_since is not None
                and now - pod.unschedulable_since >= self.spec.max_in_unschedulable_s
            ):
                self._requeue(pod, now)

    def next_timer(self) -> float | None:
        """The earliest backoff expiry among pods waiting in backoffQ."""
        return min((p.backoff_until for p in self.backoff.values()), default=None)

    def __len__(self) -> int:
        return len(self.active) + len(self.backoff) + len(self.unschedulable)
