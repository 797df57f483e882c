"""The simulator's model of one vLLM replica, independent of HTTP.

Scheduling (at most ``max_num_seqs`` running and only while their KV blocks fit, the rest
FIFO-waiting), the timing model (prefill per uncached prompt token, optionally one prefill at a time;
ITL growing with the running batch; everything times ``time_scale``), vLLM's block-hashed prefix
cache in a shared block pool (:mod:`.kv`), request validation with vLLM's error texts, failure
injection, and the vLLM-named metrics. :mod:`.http` turns it into
an OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.sim.kv import Allocation, KvBlockPool, block_keys

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
"""What the simulator counts as a token (also used to size generated prompts)."""
_SAMPLE_TEXT = (
    "the meeting reviewed the plan and agreed on next steps for the release while the team "
    "discussed budget risks owners deadlines and open questions before closing the session"
)
_WORDS = tuple(_SAMPLE_TEXT.split(" "))
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class SimConfig:
    """How the simulated replica behaves; field names follow llm-d-inference-sim's flags."""

    model: str = "kubescribe-sim"
    """The served model name; requests naming another model get 404, like vLLM."""
    ttft: float = 0.0
    """Constant time to first token (seconds), paid by every request."""
    ttft_per_token: float = 0.0
    """Extra prefill time per uncached prompt token (seconds): prefix-cache hits skip it."""
    itl: float = 0.0
    """Inter-token latency (seconds) between output tokens of a batch of one."""
    itl_per_seq: float = 0.0
    """ITL growth per running sequence: ITL = ``itl`` + ``itl_per_seq`` x running (a bigger decode batch is slower)."""
    prefill_serial: bool = False
    """Prefills run one at a time (the GPU is compute-bound while prefilling): long prompts queue behind each other."""
    max_num_seqs: int = 256
    """Requests running at once; the rest wait. vLLM's default is 256 (1024 on large GPUs); 5 is
    llm-d-inference-sim's default, which made the old GAIE analogue a semaphore benchmark."""
    max_model_len: int = 32768
    """Prompt + max_tokens above this is a 400, as vLLM answers; raised from 1024 for transcripts."""
    failure_rate: float = 0.0
    """Fraction of requests answered with one of ``failure_codes`` instead of a completion."""
    failure_codes: tuple[int, ...] = (429, 503)
    retry_after: float = 0.05
    """``Retry-After`` seconds sent with injected failures (fractional: the clients here accept it)."""
    mode: Literal["echo", "random"] = "random"
    """``echo`` returns the last user message; ``random`` deterministic text seeded by the prompt."""
    default_max_tokens: int = 64
    """Output length in ``random`` mode when the request sets no ``max_tokens``."""
    block_size: int = 16
    """Prefix-cache block, in tokens (vLLM's default)."""
    kv_cache_blocks: int = 8192
    """KV cache capacity in blocks: the binding limit. A running request holds
    ceil((prompt + output) / block_size) blocks (cached prefix blocks shared); admission waits for them;
    unreferenced cached blocks are evicted LRU to make room, as vLLM's free-block queue does."""
    time_scale: float = 1.0
    """Every simulated duration is multiplied by this (0.1 runs ten times faster than the modelled GPU)."""
    stream_interval: int = 1
    """Output tokens per SSE chunk (vLLM's ``--stream-interval``); >1 saves CPU in long sweeps."""
    fault: Literal["none", "malformed", "drop"] = "none"
    """Stream faults for client tests: ``malformed`` sends a non-JSON data line, ``drop`` cuts the stream."""
    seed: int = 0


def _content_text(content: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts (as GuideLLM sends)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
        return "".join(p.get("text", "") for p in content if p.get("type", "text") == "text")
    return None


def tokenize(text: str) -> list[str]:
    """Words and punctuation: close enough to BPE counts for scheduling and cache behaviour."""
    return TOKEN_RE.findall(text)


class _Metrics:
    """vLLM metric names on a registry of their own, so several sims can live in one process."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self.running = Gauge("vllm:num_requests_running", "Requests decoding.", labels, registry=r).labels(model)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests queued.", labels, registry=r).labels(model)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV cache usage (0-1).", labels, registry=r).labels(model)

        def latency(name: str, documentation: str):  # one latency histogram of this model
            return Histogram(name, documentation, labels, buckets=_LATENCY_BUCKETS, registry=r).labels(model)

        self.ttft = latency("vllm:time_to_first_token_seconds", "TTFT.")
        self.itl = latency("vllm:inter_token_latency_seconds", "ITL.")
        self.tpot = latency("vllm:time_per_output_token_seconds", "TPOT.")
        self.e2e = latency("vllm:e2e_request_latency_seconds", "E2E latency.")
        self.queue_time = latency("vllm:request_queue_time_seconds", "Time waiting.")
        self.prefix_queries = Counter(
            "vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", labels, registry=r
        ).labels(model)
        self.prefix_hits = Counter(
            "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", labels, registry=r
        ).labels(model)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens.", labels, registry=r).labels(model)
        self.generation_tokens = Counter("vllm:generation_tokens", "Output tokens.", labels, registry=r).labels(model)
        self.success = Counter("vllm:request_success", "Finished requests.", [*labels, "finished_reason"], registry=r)
        self.failures = Counter(
            "kubescribe_sim:injected_failures", "Injected error responses.", [*labels, "code"], registry=r
        )
        self.peak_running = Gauge(
            "kubescribe_sim:peak_num_requests", "Most requests in flight (running+waiting) at once.", labels, registry=r
        ).labels(model)


@dataclass
class SimRequest:
    """One parsed completion request: its prompt tokens and the output the engine will send."""

    prompt_tokens: list[str]
    block_keys: list[bytes]
    output: list[str]
    stream: bool
    include_usage: bool
    chat: bool
    model: str
    arrived: float = field(default_factory=time.perf_counter)


class RequestError(Exception):
    """A request the simulated replica refuses: an HTTP status, vLLM's message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class SimEngine:
    """The scheduling and timing model, independent of HTTP."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = _Metrics(config.model)
        self.cache = KvBlockPool(config.block_size, config.kv_cache_blocks)
        self.random = random.Random(config.seed)
        self.running = 0
        self.waiting = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.peak_running = 0
        self.requests = 0
        self.objectives: collections.Counter[str] = collections.Counter()
        """``x-gateway-inference-objective`` values seen, for tests of gateway-friendly clients."""
        self._queue: collections.deque[tuple[SimRequest, asyncio.Future[Allocation]]] = collections.deque()
        self._prefill_lock: asyncio.Lock | None = None
        self._tokens: collections.OrderedDict[bytes, tuple[list[str], list[bytes]]] = collections.OrderedDict()

    def _tokenized(self, prompt: str) -> tuple[list[str], list[bytes]]:
        """Tokens and prefix-block keys, memoised: repeated 8k-token prompts would otherwise cost the
        simulator ~20 ms of CPU each, which a time-scaled run would read as 10x that in model time."""
        digest = hashlib.blake2b(prompt.encode(), digest_size=16).digest()
        hit = self._tokens.get(digest)
        if hit is None:
            tokens = tokenize(prompt)
            hit = (tokens, block_keys(tokens, self.config.block_size))
            self._tokens[digest] = hit
            if len(self._tokens) > 256:
                self._tokens.popitem(last=False)
        else:
            self._tokens.move_to_end(digest)
        return hit

    def _admit(self) -> None:
        """Admit waiting requests in FIFO order while a sequence slot and their KV blocks are free."""
        while self._queue and self.running < max(1, self.config.max_num_seqs):
            request, future = self._queue[0]
            if future.done():  # the client went away while waiting
                self._queue.popleft()
                continue
            allocation = self.cache.try_allocate(request.prompt_tokens, len(request.output), request.block_keys)
            if allocation is None:
                return  # head-of-line waits for blocks, as vLLM's FCFS scheduler does
            self._queue.popleft()
            self.running += 1
            future.set_result(allocation)

    def scaled(self, seconds: float) -> float:
        return seconds * self.config.time_scale

    async def prefill(self, seconds: float) -> None:
        """Sleep the prefill; with ``prefill_serial`` one prefill at a time (FIFO) holds the GPU."""
        if seconds <= 0:
            return
        if not self.config.prefill_serial:
            await asyncio.sleep(self.scaled(seconds))
            return
        if self._prefill_lock is None:  # created on the server's loop
            self._prefill_lock = asyncio.Lock()
        async with self._prefill_lock:
            await asyncio.sleep(self.scaled(seconds))

    def token_delay(self) -> float:
        """Seconds until the next output token: the decode step grows with the running batch."""
        return self.scaled(self.config.itl + self.config.itl_per_seq * self.running)

    def parse(self, body: Any, *, chat: bool) -> SimRequest:
        """Validate an OpenAI request body; problems are 4xx with the reason, as vLLM answers."""
        if not isinstance(body, dict):
            raise RequestError(400, "request body must be a JSON object")
        model = body.get("model") or self.config.model
        if model != self.config.model:
            raise RequestError(404, f"The model `{model}` does not exist; this server serves `{self.config.model}`.")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise RequestError(400, "`messages` must be a non-empty list")
            parts, last_user = [], ""
            for message in messages:
                content = _content_text(message.get("content", "")) if isinstance(message, dict) else None
                if content is None:
                    raise RequestError(400, "each message needs a string `content` or a list of text parts")
                parts.append(f"<|{message.get('role', 'user')}|> {content}")
                if message.get("role") == "user":
                    last_user = content
            prompt, echo_source = "\n".join(parts), last_user
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise RequestError(400, "`prompt` must be a string")
            echo_source = prompt
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise RequestError(400, "`max_tokens` must be a positive integer")
        prompt_tokens, keys = self._tokenized(prompt)
        budget = max_tokens if max_tokens is not None else self.config.default_max_tokens
        if len(prompt_tokens) + budget > self.config.max_model_len:
            raise RequestError(
                400,
                f"This model's maximum context length is {self.config.max_model_len} tokens. However, you "
                f"requested {len(prompt_tokens) + budget} tokens ({len(prompt_tokens)} in the messages, "
                f"{budget} in the completion).",
            )
        blocks = self.cache.blocks_needed(len(prompt_tokens), budget)
        if blocks > self.config.kv_cache_blocks:
            raise RequestError(
                400,
                f"This request needs {blocks} KV-cache blocks of {self.config.block_size} tokens but the replica "
                f"has {self.config.kv_cache_blocks}: shorten the prompt or max_tokens.",
            )
        if self.config.mode == "echo":
            output = tokenize(echo_source)[:budget] or ["."]
        else:
            seeded = random.Random(hashlib.sha256(prompt.encode()).digest())
            output = [seeded.choice(_WORDS) for _ in range(budget)]
        stream_options = body.get("stream_options") or {}
        return SimRequest(
            prompt_tokens=prompt_tokens,
            block_keys=keys,
            output=output,
            stream=bool(body.get("stream")),
            include_usage=bool(stream_options.get("include_usage")) if isinstance(stream_options, dict) else False,
            chat=chat,
            model=model,
        )

    def maybe_fail(self) -> None:
        if self.config.failure_rate > 0 and self.random.random() < self.config.failure_rate:
            code = self.random.choice(self.config.failure_codes)
            self.metrics.failures.labels(self.config.model, str(code)).inc()
            raise RequestError(
                code,
                "simulated overload: retry later",
                {"Retry-After": f"{self.config.retry_after:g}"},
            )

    @contextlib.asynccontextmanager
    async def slot(self, request: SimRequest) -> AsyncIterator[float]:
        """Wait for a running slot and KV blocks (FIFO), then hold them; yields the prefill seconds (unscaled)."""
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.metrics.peak_running.set(self.peak_in_flight)
        future: asyncio.Future[Allocation] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self.waiting += 1
        self.metrics.waiting.set(self.waiting)
        allocation: Allocation | None = None
        try:
            self._admit()
            try:
                allocation = await future
            finally:
                self.waiting -= 1
                self.metrics.waiting.set(self.waiting)
            self.peak_running = max(self.peak_running, self.running)
            self.metrics.running.set(self.running)
            self.metrics.queue_time.observe(time.perf_counter() - request.arrived)
            hits = allocation.hit_tokens
            self.metrics.prefix_queries.inc(len(request.prompt_tokens))
            self.metrics.prefix_hits.inc(hits)
            self.metrics.prompt_tokens.inc(len(request.prompt_tokens))
            self.metrics.kv_usage.set(self.cache.usage)
            yield self.config.ttft + self.config.ttft_per_token * (len(request.prompt_tokens) - hits)
        finally:
            if allocation is None and future.done() and not future.cancelled():
                allocation = future.result()  # admitted just as the waiter was cancelled
            elif allocation is None:
                future.cancel()
            if allocation is not None:
                self.running -= 1
                self.cache.release(allocation)
                self.metrics.running.set(self.running)
                self.metrics.kv_usage.set(self.cache.usage)
                self._admit()
                self.metrics.running.set(self.running)
            self.in_flight -= 1

    def finished(self, request: SimRequest, first_token_at: float, tokens: int, reason: str) -> None:
        now = time.perf_counter()
        self.metrics.ttft.observe(first_token_at - request.arrived)
        self.metrics.e2e.observe(now - request.arrived)
        if tokens > 1:
            self.metrics.tpot.observe((now - first_token_at) / (tokens - 1))
        self.metrics.generation_tokens.inc(tokens)
        self.metrics.success.labels(self.config.model, reason).inc()
