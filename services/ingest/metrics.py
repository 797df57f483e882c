"""Prometheus metrics of the ingest API, in a registry per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""From a tiny clip on loopback (~5 ms) to a 512 MiB upload over a slow link."""
SIZE_BUCKETS = tuple(float(1 << p) for p in range(10, 31, 2))
"""1 KiB to 1 GiB in powers of four."""


class IngestMetrics:
    """Requests, bytes, latencies and rejections by reason."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kubescribe_ingest_requests",
            "HTTP requests by route, method and status code.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubescribe_ingest_request_duration_seconds",
            "HTTP request latency by route.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes = Counter(
            "kubescribe_ingest_received_bytes",
            "Audio bytes accepted into the audio Object Store.",
            registry=self.registry,
        )
        self.upload_size = Histogram(
            "kubescribe_ingest_upload_size_bytes",
            "Size of accepted uploads.",
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )
        self.accepted = Counter(
            "kubescribe_ingest_accepted_recordings",
            "Recordings accepted (202), idempotent replays excluded.",
            registry=self.registry,
        )
        self.rejections = Counter(
            "kubescribe_ingest_rejections",
            "Uploads rejected, by reason (too_large, not_audio, empty, bad_request, invalid_header, "
            "unauthorized, unavailable).",
            ("reason",),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
