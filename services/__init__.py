"""kubescribe: recorded audio to transcripts and summaries over NATS JetStream.

One subpackage per service (``ingest``, ``dispatcher``, ``transcriber``, ``summarizer``),
``common`` for what they share (settings, event contracts, NATS topology, status, telemetry)
and ``runtime`` for the embedded single-machine default.
"""

__version__ = "0.1.0"
