"""Prometheus metrics of the notifier (default registry), scraped when a metrics port is set."""

from __future__ import annotations

from prometheus_client import Counter

OUTCOMES = Counter(
    "kubescribe_notifier_messages",
    "Handled outcome events by decision (delivered, retrying, failed, refused, duplicate, no-webhook, ...).",
    ["decision"],
)
