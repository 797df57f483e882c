"""A vLLM-compatible inference simulator, in the spirit of llm-d-inference-sim.

It speaks the OpenAI API that the GAIE gateway and the summarizer speak (``/v1/chat/completions``
and ``/v1/completions``, streaming or not; ``/v1/models``; ``/health``) and exports ``/metrics``
with vLLM's metric names, so load tests, the endpoint picker and KEDA see what a vLLM replica
would show, without a GPU or a model:

- time to first token: a constant (``ttft``) plus ``ttft_per_token`` for every prompt token that
  is *not* a prefix-cache hit; the cache holds blocks of ``block_size`` tokens keyed by the hash
  chain of the prefix, as vLLM's automatic prefix caching does, so a shared system prompt is
  paid for once;
- ``itl`` between output tokens; ``max_tokens`` honoured; ``usage`` in the final chunk;
- at most ``max_num_seqs`` running requests, the rest wait in FIFO order (``num_requests_waiting``);
- failure injection: a ``failure_rate`` of responses are 429/503 with ``Retry-After``, and
  ``fault`` makes streams malformed or drop mid-way, to test clients against a bad gateway.

Run it with ``kubescribe sim-llm`` or ``python -m services.runtime.sim_llm``; embed it with
``with SimLlmServer(SimConfig(ttft=0.2)) as sim: sim.base_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.runtime.nats_server import free_port
from services.runtime.processes import terminate

logger = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
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
    """Inter-token latency (seconds) between output tokens."""
    max_num_seqs: int = 5
    """Requests decoding at once; the rest wait (vLLM's and the sim's default is 5)."""
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
    """KV cache capacity in blocks: bounds the prefix cache and scales ``kv_cache_usage_perc``."""
    fault: Literal["none", "malformed", "drop"] = "none"
    """Stream faults for client tests: ``malformed`` sends a non-JSON data line, ``drop`` cuts the stream."""
    seed: int = 0


def tokenize(text: str) -> list[str]:
    """Words and punctuation: close enough to BPE counts for scheduling and cache behaviour."""
    return _TOKEN_RE.findall(text)


class PrefixCache:
    """Block hashes of prompts seen before, LRU-evicted at ``capacity`` blocks."""

    def __init__(self, block_size: int, capacity: int) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self._blocks: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def lookup_and_insert(self, tokens: list[str]) -> int:
        """Number of leading prompt tokens already cached (whole blocks); inserts the rest."""
        digest = hashlib.blake2b(digest_size=16)
        hit_tokens, missed = 0, False
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            digest.update("\x1f".join(tokens[start : start + self.block_size]).encode())
            key = digest.digest()
            if not missed and key in self._blocks:
                hit_tokens += self.block_size
                self._blocks.move_to_end(key)
                continue
            missed = True
            self._blocks[key] = None
            if len(self._blocks) > self.capacity:
                self._blocks.popitem(last=False)
        return hit_tokens

    @property
    def usage(self) -> float:
        return len(self._blocks) / self.capacity if self.capacity else 0.0


class _Metrics:
    """vLLM metric names on a registry of their own, so several sims can live in one process."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self.running = Gauge("vllm:num_requests_running", "Requests decoding.", labels, registry=r).labels(model)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests queued.", labels, registry=r).labels(model)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV cache usage (0-1).", labels, registry=r).labels(model)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "TTFT.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model)
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds", "ITL.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model)
        self.tpot = Histogram(
            "vllm:time_per_output_token_seconds", "TPOT.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "E2E latency.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model)
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds", "Time waiting.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model)
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
class _Request:
    prompt_tokens: list[str]
    output: list[str]
    stream: bool
    include_usage: bool
    chat: bool
    model: str
    arrived: float = field(default_factory=time.perf_counter)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class SimEngine:
    """The scheduling and timing model, independent of HTTP."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = _Metrics(config.model)
        self.cache = PrefixCache(config.block_size, config.kv_cache_blocks)
        self.random = random.Random(config.seed)
        self.running = 0
        self.waiting = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.peak_running = 0
        self.requests = 0
        self.objectives: collections.Counter[str] = collections.Counter()
        """``x-gateway-inference-objective`` values seen, for tests of gateway-friendly clients."""
        self._slots: asyncio.Semaphore | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:  # created on the server's loop
            self._slots = asyncio.Semaphore(max(1, self.config.max_num_seqs))
        return self._slots

    def parse(self, body: Any, *, chat: bool) -> _Request:
        """Validate an OpenAI request body; problems are 4xx with the reason, as vLLM answers."""
        if not isinstance(body, dict):
            raise _HttpError(400, "request body must be a JSON object")
        model = body.get("model") or self.config.model
        if model != self.config.model:
            raise _HttpError(404, f"The model `{model}` does not exist; this server serves `{self.config.model}`.")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _HttpError(400, "`messages` must be a non-empty list")
            parts, last_user = [], ""
            for message in messages:
                if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
                    raise _HttpError(400, "each message needs a string `content`")
                parts.append(f"<|{message.get('role', 'user')}|> {message.get('content', '')}")
                if message.get("role") == "user":
                    last_user = message.get("content", "")
            prompt, echo_source = "\n".join(parts), last_user
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise _HttpError(400, "`prompt` must be a string")
            echo_source = prompt
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _HttpError(400, "`max_tokens` must be a positive integer")
        prompt_tokens = tokenize(prompt)
        budget = max_tokens if max_tokens is not None else self.config.default_max_tokens
        if len(prompt_tokens) + budget > self.config.max_model_len:
            raise _HttpError(
                400,
                f"This model's maximum context length is {self.config.max_model_len} tokens. However, you "
                f"requested {len(prompt_tokens) + budget} tokens ({len(prompt_tokens)} in the messages, "
                f"{budget} in the completion).",
            )
        if self.config.mode == "echo":
            output = tokenize(echo_source)[:budget] or ["."]
        else:
            seeded = random.Random(hashlib.sha256(prompt.encode()).digest())
            output = [seeded.choice(_WORDS) for _ in range(budget)]
        stream_options = body.get("stream_options") or {}
        return _Request(
            prompt_tokens=prompt_tokens,
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
            raise _HttpError(
                code,
                "simulated overload: retry later",
                {"Retry-After": f"{self.config.retry_after:g}"},
            )

    @contextlib.asynccontextmanager
    async def slot(self, request: _Request) -> AsyncIterator[float]:
        """Wait for a running slot (FIFO), then hold it; yields the prefill time to sleep."""
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.metrics.peak_running.set(self.peak_in_flight)
        self.waiting += 1
        self.metrics.waiting.set(self.waiting)
        acquired = False
        try:
            await self._semaphore().acquire()
            acquired = True
            self.waiting -= 1
            self.metrics.waiting.set(self.waiting)
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            self.metrics.running.set(self.running)
            self.metrics.queue_time.observe(time.perf_counter() - request.arrived)
            hits = self.cache.lookup_and_insert(request.prompt_tokens)
            self.metrics.prefix_queries.inc(len(request.prompt_tokens))
            self.metrics.prefix_hits.inc(hits)
            self.metrics.prompt_tokens.inc(len(request.prompt_tokens))
            self.metrics.kv_usage.set(self.cache.usage)
            yield self.config.ttft + self.config.ttft_per_token * (len(request.prompt_tokens) - hits)
        finally:
            if acquired:
                self.running -= 1
                self.metrics.running.set(self.running)
                self._semaphore().release()
            else:
                self.waiting -= 1
                self.metrics.waiting.set(self.waiting)
            self.in_flight -= 1

    def finished(self, request: _Request, first_token_at: float, tokens: int, reason: str) -> None:
        now = time.perf_counter()
        self.metrics.ttft.observe(first_token_at - request.arrived)
        self.metrics.e2e.observe(now - request.arrived)
        if tokens > 1:
            self.metrics.tpot.observe((now - first_token_at) / (tokens - 1))
        self.metrics.generation_tokens.inc(tokens)
        self.metrics.success.labels(self.config.model, reason).inc()


def _usage(request: _Request, tokens: int) -> dict[str, int]:
    prompt = len(request.prompt_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}


def _chunk(request: _Request, rid: str, created: int, delta: str | None, finish: str | None, first: bool) -> bytes:
    if request.chat:
        payload: dict[str, Any] = {"role": "assistant", "content": delta} if first else {}
        if delta is not None and not first:
            payload["content"] = delta
        choice: dict[str, Any] = {"index": 0, "delta": payload, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": delta or "", "finish_reason": finish}
        obj = "text_completion"
    body = {"id": rid, "object": obj, "created": created, "model": request.model, "choices": [choice]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class _SseResponse(Response):
    """Server-sent events written straight to ASGI.

    Starlette's ``StreamingResponse`` runs a disconnect-listener task next to every stream;
    the simulator does not need it (a dropped client ends the stream at its next write), and at
    64 concurrent streams every saved task counts.
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def build_app(engine: SimEngine) -> Starlette:
    """The HTTP surface of one simulated replica."""
    config = engine.config

    def error(exc: _HttpError) -> JSONResponse:
        kind = {429: "RateLimitError", 503: "ServiceUnavailableError", 404: "NotFoundError"}.get(
            exc.status, "BadRequestError"
        )
        return JSONResponse(
            {"error": {"message": exc.message, "type": kind, "code": exc.status}},
            status_code=exc.status,
            headers=exc.headers,
        )

    async def completions(request: Request, chat: bool) -> Response:
        engine.objectives[request.headers.get("x-gateway-inference-objective", "")] += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(_HttpError(400, "request body is not valid JSON"))
        try:
            parsed = engine.parse(body, chat=chat)
            engine.maybe_fail()
        except _HttpError as exc:
            return error(exc)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if parsed.stream:
            return _SseResponse(_stream(parsed, rid, created))
        async with engine.slot(parsed) as prefill:
            await asyncio.sleep(prefill)
            first = time.perf_counter()
            if config.itl > 0 and len(parsed.output) > 1:
                await asyncio.sleep(config.itl * (len(parsed.output) - 1))
            text = " ".join(parsed.output)
            engine.finished(parsed, first, len(parsed.output), "length")
        usage = _usage(parsed, len(parsed.output))
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": "length"}
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": parsed.model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _stream(parsed: _Request, rid: str, created: int) -> AsyncIterator[bytes]:
        async with engine.slot(parsed) as prefill:
            if prefill > 0:
                await asyncio.sleep(prefill)
            first_at = time.perf_counter()
            sent = 0
            last = first_at
            for index, token in enumerate(parsed.output):
                if index:
                    if config.itl > 0:
                        await asyncio.sleep(config.itl)
                    now = time.perf_counter()
                    engine.metrics.itl.observe(now - last)
                    last = now
                text = token if index == 0 else " " + token
                yield _chunk(parsed, rid, created, text, None, first=index == 0)
                sent += 1
                if config.fault == "malformed" and sent == 2:
                    yield b"data: {not json\n\n"
                    return
                if config.fault == "drop" and sent == 2:
                    raise ConnectionAbortedError("simulated dropped stream")
            engine.finished(parsed, first_at, sent, "length")
        yield _chunk(parsed, rid, created, None, "length", first=False)
        if parsed.include_usage:
            usage_chunk = {
                "id": rid,
                "object": "chat.completion.chunk" if parsed.chat else "text_completion",
                "created": created,
                "model": parsed.model,
                "choices": [],
                "usage": _usage(parsed, sent),
            }
            yield b"data: " + json.dumps(usage_chunk, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def chat_route(request: Request) -> Response:
        return await completions(request, chat=True)

    async def completions_route(request: Request) -> Response:
        return await completions(request, chat=False)

    async def models(_: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": config.model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "kubescribe-sim",
                        "max_model_len": config.max_model_len,
                    }
                ],
            }
        )

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_route, methods=["POST"]),
            Route("/v1/completions", completions_route, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/metrics", metrics),
        ]
    )


class SimLlmServer:
    """The simulator on 127.0.0.1, in a background thread (default) or a child process.

    A thread shares the caller's GIL, which is fine for tests; ``isolated=True`` (a child process) keeps the
    simulator's CPU out of the caller's measurements (the benchmark uses it). ``engine`` (and
    ``peak_running``) is only available in thread mode.
    """

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, *, isolated: bool = False
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port or free_port(host)
        self.isolated = isolated
        self.engine: SimEngine | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def peak_running(self) -> int:
        """Most requests in flight at once (running + waiting): what a client's concurrency limit bounds."""
        if self.engine is None:
            raise RuntimeError("peak_running is only tracked in thread mode; read /metrics instead")
        return self.engine.peak_in_flight

    def start(self, timeout: float = 15.0) -> None:
        if self.isolated:
            self._start_process()
        else:
            self.engine = SimEngine(self.config)
            uv_config = uvicorn.Config(
                build_app(self.engine),
                host=self.host,
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
                backlog=2048,
            )
            self._server = uvicorn.Server(uv_config)
            self._thread = threading.Thread(target=self._server.run, name=f"sim-llm-{self.port}", daemon=True)
            self._thread.start()
        self._wait_ready(timeout)

    def _start_process(self) -> None:
        command = [
            sys.executable,
            "-m",
            "services.runtime.sim_llm",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--config-json",
            json.dumps(dataclasses.asdict(self.config)),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"sim-llm exited with {self._process.returncode}: {stderr[-2000:]}")
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError(f"sim-llm could not listen on {self.url}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sim-llm did not become healthy on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server, self._thread = None, None
        process, self._process = self._process, None
        terminate(process)
        if process is not None and process.stderr:
            process.stderr.close()

    def __enter__(self) -> SimLlmServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run in the foreground until interrupted (``kubescribe sim-llm``)."""
    uvicorn.run(
        build_app(SimEngine(config)),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
    )


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="vLLM-compatible simulator (child process of SimLlmServer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config-json", default="{}")
    args = parser.parse_args(argv)
    values = json.loads(args.config_json)
    if "failure_codes" in values:
        values["failure_codes"] = tuple(values["failure_codes"])
    serve_forever(SimConfig(**values), args.host, args.port)


if __name__ == "__main__":
    _main()
