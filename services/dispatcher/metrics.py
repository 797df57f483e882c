"""Prometheus metrics of the dispatcher (scraped from the process that runs it)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDINGS_ACCEPTED = Counter(
    "kubescribe_dispatcher_recordings_accepted_total", "AudioReceived messages accepted for planning"
)
RECORDINGS_REJECTED = Counter(
    "kubescribe_dispatcher_recordings_rejected_total", "Messages failed at dispatch (malformed, missing audio)"
)
RECORDINGS_RETRIED = Counter(
    "kubescribe_dispatcher_recordings_retried_total", "Recordings re-planned after their job ended without an outcome"
)
JOBS_SUBMITTED = Counter("kubescribe_dispatcher_jobs_submitted_total", "Transcription jobs submitted", ["backend"])
JOBS_FINISHED = Counter(
    "kubescribe_dispatcher_jobs_finished_total", "Transcription jobs that ended", ["backend", "state"]
)
JOB_RECORDINGS = Histogram(
    "kubescribe_dispatcher_job_recordings", "Recordings per job", buckets=(1, 2, 4, 8, 16, 32, 64)
)
QUEUE_WAIT = Histogram(
    "kubescribe_dispatcher_queue_wait_seconds",
    "AudioReceived created → dispatched into a job",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
ADMISSION_WAIT = Histogram(
    "kubescribe_dispatcher_admission_wait_seconds",
    "Job submitted → running",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
PENDING = Gauge("kubescribe_dispatcher_pending_recordings", "Recordings held (planned or in a live job)")
