"""Prometheus metrics shared by every service (default registry, like each service's own ``metrics.py``).

They live here because the code that updates them (e.g. :func:`services.common.events.parse_event`)
runs in every consumer; each process exports them with its own metrics when a port is set.
"""

from __future__ import annotations

from prometheus_client import Counter

EVENT_UNKNOWN_FIELDS = Counter(
    "kubescribe_event_unknown_fields_total",
    "Fields a consumer dropped because its event model does not declare them (a newer producer's additions).",
    ["event_type", "field"],
)
