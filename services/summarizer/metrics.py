"""Prometheus metrics of the summarizer (default registry), scraped when a metrics port is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TTFT = Histogram("kubescribe_summarizer_ttft_seconds", "Time to first token of the final request.", buckets=_BUCKETS)
GENERATION = Histogram("kubescribe_summarizer_generation_seconds", "First to last token.", buckets=_BUCKETS)
QUEUE = Histogram(
    "kubescribe_summarizer_queue_seconds", "TranscriptReady published to picked up by the summarizer.", buckets=_BUCKETS
)
TOKENS = Counter("kubescribe_summarizer_tokens", "Tokens exchanged with the LLM.", ["direction"])
REQUESTS = Counter("kubescribe_summarizer_llm_attempts", "Gateway attempts, retries included.")
IN_FLIGHT = Gauge("kubescribe_summarizer_in_flight", "Transcripts being summarized now.")
OUTCOMES = Counter("kubescribe_summarizer_messages", "Handled TranscriptReady messages by outcome.", ["outcome"])
