"""The NATS JetStream topology: streams, the status KV bucket and the Object Stores.

Created the same way by the embedded runtime, by every service at start-up and by the Helm
chart's init Job, so there is one definition. :func:`ensure_topology` is idempotent: it creates
what is missing and updates configs in place when settings change.

On a JetStream cluster the API answers only once the meta group has a leader, and a replicated
stream can be placed only once enough peers have joined it: a fresh 3-node cluster (``kubescribe
up --nats-cluster 3``, or a StatefulSet rolling out) refuses both for a few seconds. So
:func:`ensure_topology` retries those two answers (503 "JetStream system temporarily
unavailable", "no suitable peers") and timeouts until
``StreamSettings.ready_timeout_s``; every other error is a real configuration problem and is
raised at once. :func:`ensure_consumers` does the same for the services' durable consumers,
which replicas of a service create at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError, ServiceUnavailableError

from services.common.errors import ConfigurationError
from services.common.events import Stage, failed_subject
from services.common.settings import StreamSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

AUDIO_STREAM = "AUDIO"
TRANSCRIPTS_STREAM = "TRANSCRIPTS"
SUMMARIES_STREAM = "SUMMARIES"
FAILED_STREAM = "FAILED"
DELETIONS_STREAM = "DELETIONS"

AUDIO_RECEIVED = "kubescribe.audio.received"
TRANSCRIPT_READY = "kubescribe.transcript.ready"
SUMMARY_READY = "kubescribe.summary.ready"

STATUS_BUCKET = "recordings"
AUDIO_BUCKET = "audio"
TRANSCRIPTS_BUCKET = "transcripts"
SUMMARIES_BUCKET = "summaries"
JOBS_BUCKET = "jobs"
IDEMPOTENCY_BUCKET = "idempotency"
"""Ingest's ``Idempotency-Key`` claims: sha256(tenant, key) → recording id, claimed with ``kv.create``."""

DELETED_BUCKET = "deleted"
"""Tombstones of deleted recordings (see :mod:`services.common.tombstones`)."""
RECORDING_DELETED = "kubescribe.recording.deleted"

DISPATCHER_CONSUMER = "dispatcher"
SUMMARIZER_CONSUMER = "summarizer"
NOTIFIER_CONSUMER = "notifier"
"""The notifier's durable on both SUMMARIES and FAILED (consumer names are per stream)."""


@dataclass(frozen=True)
class StreamSpec:
    """One event stream: its name and the subjects it captures."""

    name: str
    subjects: tuple[str, ...]
    description: str


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(AUDIO_STREAM, ("kubescribe.audio.>",), "Recordings awaiting transcription"),
    StreamSpec(TRANSCRIPTS_STREAM, ("kubescribe.transcript.>",), "Transcripts awaiting summarization"),
    StreamSpec(SUMMARIES_STREAM, ("kubescribe.summary.>",), "Finished summaries"),
    StreamSpec(DELETIONS_STREAM, (RECORDING_DELETED,), "Deleted recordings (privacy requests, retention)"),
    # Listed one by one: a wildcard ``kubescribe.*.failed`` would overlap ``kubescribe.audio.>``,
    # which JetStream refuses.
    StreamSpec(FAILED_STREAM, tuple(failed_subject(s) for s in Stage), "Failures, with their reasons"),
)

KV_BUCKETS: tuple[tuple[str, str], ...] = (
    (STATUS_BUCKET, "Status of every recording: stage, job, attempts, timestamps, error"),
    (JOBS_BUCKET, "Transcription job specs, read by the transcriber entrypoint"),
    (IDEMPOTENCY_BUCKET, "Idempotency-Key claims of ingest uploads: key hash to recording id"),
    (DELETED_BUCKET, "Tombstones of deleted recordings: stages drop them instead of writing"),
)
"""The KV buckets and their descriptions (no byte limit: they reserve nothing)."""

DIRECT_KV_BUCKETS = frozenset({STATUS_BUCKET, DELETED_BUCKET})
"""Buckets read with direct gets (``allow_direct``, as the Go client and the nats CLI create every
bucket): every stage reads a recording's status and tombstone, and a compare-and-set or a
re-check guards each of those reads. The job specs and idempotency claims stay leader-read."""


def stream_config(spec: StreamSpec, settings: StreamSettings) -> StreamConfig:
    """The JetStream config of an event stream; file storage so a restart loses nothing."""
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.max_age_s,
        max_bytes=settings.max_bytes,
        max_msg_size=settings.max_msg_size,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.replicas,
    )


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    fields = ("subjects", "max_age", "max_bytes", "max_msg_size", "duplicate_window", "description")
    return any(getattr(current, f) != getattr(wanted, f) for f in fields)


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> bool:
    """Create or update one stream; returns True when anything changed."""
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        logger.info("created stream %s", config.name)
        return True
    if _differs(info.config, config):
        await js.update_stream(config)
        logger.info("updated stream %s", config.name)
        return True
    return False


PLACEMENT_ERROR_CODES = frozenset({10005})
"""JetStream ``err_code`` meaning "not enough peers yet" (no suitable peers for placement). Not
10074 (replicas > 1 on a server without a cluster) nor the storage limits: those never heal."""
NOT_CLUSTERED_ERROR_CODE = 10074
INSUFFICIENT_STORAGE_ERROR_CODE = 10047


def _cluster_not_ready(exc: BaseException) -> bool:
    """A refusal that a forming cluster gives and a formed one does not (worth waiting out)."""
    if isinstance(exc, ServiceUnavailableError | NoRespondersError | NatsTimeoutError | TimeoutError):
        return True
    return isinstance(exc, APIError) and (exc.err_code in PLACEMENT_ERROR_CODES or exc.code == 503)


async def ensure_topology(js: JetStreamContext, settings: StreamSettings | None = None) -> list[str]:
    """Create or update every stream, the status KV and the Object Stores.

    Returns the names of what was created or changed (empty when everything was in place),
    which makes a second call observably a no-op. Waits for a forming cluster (module docstring).
    """
    settings = settings or StreamSettings()
    changed: list[str] = []
    return await _waiting_out_a_forming_cluster(lambda: _ensure_all(js, settings, changed), settings)


async def ensure_consumers(
    js: JetStreamContext, consumers: Iterable[tuple[str, ConsumerConfig]], settings: StreamSettings
) -> None:
    """Create each ``(stream, config)`` durable consumer that does not exist yet, waiting out a forming cluster.

    Why before FastStream starts its subscribers: replicas of one service start together and
    create the same durable at once, and on a cluster a few seconds old a ``CONSUMER.INFO`` can
    go unanswered while the new consumer elects its leader. FastStream's start raises that
    timeout and the service exited (notifier-1 in a full run); here it is retried like the
    streams. An existing consumer is left as it is, as nats-py's ``pull_subscribe`` leaves it.
    """

    async def create_missing() -> None:
        for stream, config in consumers:
            try:
                await js.consumer_info(stream, config.durable_name)
            except NotFoundError:
                await js.add_consumer(stream, config)
                logger.info("created consumer %s on %s", config.durable_name, stream)

    await _waiting_out_a_forming_cluster(create_missing, settings)


async def _waiting_out_a_forming_cluster(operation: Callable[[], Awaitable[T]], settings: StreamSettings) -> T:
    """``operation()``, retried every 0.5 s while the cluster is forming, for ``ready_timeout_s``."""
    deadline = time.monotonic() + settings.ready_timeout_s
    while True:
        try:
            return await operation()
        except Exception as exc:
            if isinstance(exc, APIError) and exc.err_code == NOT_CLUSTERED_ERROR_CODE:
                raise ConfigurationError(
                    f"KUBESCRIBE_STREAM_REPLICAS={settings.replicas} needs a JetStream cluster of at least that many "
                    "nodes, and this nats-server is not clustered: set it to 1 (or `kubescribe up --nats-cluster 3`)"
                ) from exc
            if isinstance(exc, APIError) and exc.err_code == INSUFFICIENT_STORAGE_ERROR_CODE:
                raise ConfigurationError(
                    f"JetStream cannot reserve the topology's {reserved_bytes(settings) / 2**30:.1f} GiB of stream and "
                    "store limits: give nats-server a larger max_file_store (its default is 75 % of the free disk) or "
                    "lower KUBESCRIBE_STREAM_AUDIO_MAX_BYTES / KUBESCRIBE_STREAM_MAX_BYTES"
                ) from exc
            if not _cluster_not_ready(exc) or time.monotonic() >= deadline:
                raise
            logger.info("JetStream not ready yet (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(0.5)


async def _ensure_all(js: JetStreamContext, settings: StreamSettings, changed: list[str]) -> list[str]:
    """One pass; ``changed`` accumulates across the retries of :func:`ensure_topology`."""
    for spec in STREAMS:
        if await ensure_stream(js, stream_config(spec, settings)) and spec.name not in changed:
            changed.append(spec.name)

    for bucket, description in KV_BUCKETS:
        kv_config = KeyValueConfig(
            bucket=bucket,
            description=description,
            history=5,
            storage=StorageType.FILE,
            replicas=settings.replicas,
            ttl=settings.max_age_s,
            direct=bucket in DIRECT_KV_BUCKETS,
        )
        if await _ensure_kv(js, kv_config) and bucket not in changed:
            changed.append(bucket)

    for bucket, max_bytes in object_store_limits(settings):
        if await _ensure_object_store(js, bucket, max_bytes, settings) and bucket not in changed:
            changed.append(bucket)
    return changed


def object_store_limits(settings: StreamSettings) -> tuple[tuple[str, int], ...]:
    """Each Object Store and its ``max_bytes``: the audio store gets its own, larger limit."""
    return (
        (AUDIO_BUCKET, settings.audio_max_bytes),
        (TRANSCRIPTS_BUCKET, settings.max_bytes),
        (SUMMARIES_BUCKET, settings.max_bytes),
    )


def reserved_bytes(settings: StreamSettings) -> int:
    """What JetStream reserves up front for the topology: every stream's and Object Store's
    ``max_bytes`` (the KV buckets have no byte limit). A store smaller than this refuses the last
    ones with err 10047, so the chart checks its JetStream volume against the same sum
    (``templates/checks.yaml``; ``tests/charts/test_jetstream.py`` keeps the two equal)."""
    return len(STREAMS) * settings.max_bytes + sum(limit for _, limit in object_store_limits(settings))


async def _ensure_kv(js: JetStreamContext, config: KeyValueConfig) -> bool:
    try:
        await js.key_value(config.bucket)
    except BucketNotFoundError:
        await js.create_key_value(config)
        logger.info("created KV bucket %s", config.bucket)
        return True
    info = await js.stream_info(f"KV_{config.bucket}")
    direct = bool(config.direct)
    if (
        info.config.max_age != config.ttl
        or info.config.description != config.description
        or bool(info.config.allow_direct) != direct
    ):
        info.config.max_age = config.ttl
        info.config.description = config.description
        info.config.allow_direct = direct
        await js.update_stream(info.config)
        return True
    return False


async def _ensure_object_store(js: JetStreamContext, bucket: str, max_bytes: int, settings: StreamSettings) -> bool:
    stream = f"OBJ_{bucket}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.create_object_store(
            bucket,
            ObjectStoreConfig(
                max_bytes=max_bytes,
                ttl=settings.max_age_s,
                storage=StorageType.FILE,
                replicas=settings.replicas,
            ),
        )
        logger.info("created Object Store %s", bucket)
        return True
    if info.config.max_bytes != max_bytes or info.config.max_age != settings.max_age_s:
        info.config.max_bytes = max_bytes
        info.config.max_age = settings.max_age_s
        await js.update_stream(info.config)
        return True
    return False
