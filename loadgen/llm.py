"""The LLM-only benchmark: TTFT, inter-token latency and throughput at fixed concurrencies.

Like GuideLLM's ``concurrent`` profile: for each concurrency ``c``, ``c`` workers each send a
streaming ``/chat/completions`` request, and a new one as soon as theirs finishes, until
``requests`` requests were made at that level. It talks to any OpenAI-compatible base URL (the
GAIE/llm-d gateway, one vLLM replica, the simulator, the local llama.cpp server), so the paper's
"gateway versus random routing" comparison is two runs against two URLs, reported side by side.

Per request it records TTFT (request sent → first content token), mean inter-token latency
((latency - TTFT) / (output tokens - 1), GuideLLM's definition), latency and token counts from
the final ``usage`` chunk (falling back to counting content chunks). The stream is read by
:mod:`services.common.openai_stream`, the summarizer's own reader, so both agree on the clock.

Given several base URLs (replicas), the client routes each request itself: ``random`` is the
paper's baseline (a Kubernetes Service spreading requests blindly), ``least-loaded`` sends to
the replica with the fewest requests in flight from this client, a local stand-in for the GAIE
endpoint picker's queue-depth scoring when no gateway runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from loadgen.errors import TargetError
from loadgen.results import LlmResult, Run, RunFooter, RunHeader
from loadgen.trace import TraceItem
from services.common.events import utcnow
from services.common.ids import new_id
from services.common.openai_stream import OpenAIStreamError, StreamedCompletion, read_completion_stream
from services.common.progress import NullProgress, Progress


@dataclass
class LlmOptions:
    name: str = "llm"
    concurrencies: Sequence[int] = (5, 10, 15, 20)
    requests: int = 50
    """Requests per concurrency level."""
    model: str | None = None
    """None: the first model the server lists at ``/models``."""
    max_tokens: int = 128
    api_key: str | None = None
    objective: str | None = None
    """``x-gateway-inference-objective`` header (GAIE), e.g. ``interactive``."""
    timeout_s: float = 300.0
    routing: str = "random"
    """With several base URLs: ``random`` or ``least-loaded`` (see the module docstring)."""
    seed: int = 0
    extra: dict = field(default_factory=dict)


ROUTINGS = ("random", "least-loaded")


class Router:
    """Picks a replica per request; counts in-flight requests per replica."""

    def __init__(self, clients: Sequence[httpx.AsyncClient], routing: str, seed: int) -> None:
        if routing not in ROUTINGS:
            raise TargetError(f"unknown routing {routing!r}: use {' or '.join(ROUTINGS)}")
        self.clients = list(clients)
        self.routing = routing
        self.rng = random.Random(seed)
        self.in_flight = [0] * len(self.clients)

    def pick(self) -> int:
        if self.routing == "random" or len(self.clients) == 1:
            return self.rng.randrange(len(self.clients))
        fewest = min(self.in_flight)
        return self.rng.choice([i for i, n in enumerate(self.in_flight) if n == fewest])


async def discover_model(client: httpx.AsyncClient) -> str:
    try:
        response = await client.get("/models")
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise TargetError(
            f"cannot list models at {client.base_url}/models ({type(exc).__name__}: {exc}); pass --model"
        ) from exc


async def one_request(
    client: httpx.AsyncClient, item: TraceItem, *, model: str, max_tokens: int, concurrency: int, t0: float
) -> LlmResult:
    """One streamed chat completion, timed on the client side."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": item.prompt}],
        "max_tokens": item.max_tokens or max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    result = LlmResult(id=item.id, concurrency=concurrency, start_s=start - t0)
    stream: StreamedCompletion | None = None
    try:
        async with client.stream("POST", "/chat/completions", json=body) as response:
            result.status = response.status_code
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                result.error = f"HTTP {response.status_code}: {text[:200]}"
                result.latency_s = time.perf_counter() - start
                return result
            stream = await read_completion_stream(response, start, model=model)
    except OpenAIStreamError as exc:
        result.error = f"malformed stream: {exc}"
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.latency_s = time.perf_counter() - start
    if stream is None:
        return result
    result.ttft_s = stream.ttft_s
    result.tokens_out = stream.tokens_out
    if stream.tokens_in is not None:
        result.tokens_in = stream.tokens_in
    if result.ttft_s is not None and result.tokens_out > 1:
        result.itl_s = (result.latency_s - result.ttft_s) / (result.tokens_out - 1)
    if stream.first_at is None:
        result.error = "stream ended without any content token"
    return result


async def benchmark(
    base_url: str | Sequence[str],
    prompts: Sequence[TraceItem],
    options: LlmOptions | None = None,
    *,
    progress: Progress | None = None,
) -> Run:
    """Run every concurrency level in turn; prompts are used round-robin, replicas per ``routing``."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise TargetError("give at least one base URL")
    options = options or LlmOptions()
    progress = progress or NullProgress()
    prompts = [p for p in prompts if p.prompt]
    if not prompts:
        raise TargetError("no prompt items: make a prompt trace with `kubescribe loadgen make --preset llm`")
    if not options.concurrencies or min(options.concurrencies) < 1 or options.requests < 1:
        raise TargetError("concurrencies must be >= 1 and requests >= 1")
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    if options.objective:
        headers["x-gateway-inference-objective"] = options.objective
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url.rstrip("/"),
                    headers=headers,
                    timeout=httpx.Timeout(options.timeout_s, connect=10.0),
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(options.concurrencies)),
                )
            )
            for url in urls
        ]
        router = Router(clients, options.routing, options.seed)
        model = options.model or await discover_model(clients[0])
        header = RunHeader(
            run_id=new_id(),
            name=options.name,
            mode="llm",
            target=" ".join(urls),
            items=options.requests * len(options.concurrencies),
            options={
                "concurrencies": list(options.concurrencies),
                "requests": options.requests,
                "model": model,
                "max_tokens": options.max_tokens,
                "objective": options.objective,
                "routing": options.routing if len(urls) > 1 else None,
                **options.extra,
            },
        )
        run = Run(header=header)
        header.started_at = utcnow()
        t0 = time.perf_counter()
        progress.on_start(header)
        counter = 0
        for concurrency in options.concurrencies:
            progress.on_phase(f"concurrency {concurrency}")
            queue: asyncio.Queue[TraceItem] = asyncio.Queue()
            for _ in range(options.requests):
                source = prompts[counter % len(prompts)]
                queue.put_nowait(source.model_copy(update={"id": f"c{concurrency}-{counter:05d}-{source.id}"}))
                counter += 1

            async def worker(level: int = concurrency, work: asyncio.Queue[TraceItem] = queue) -> None:
                while True:
                    try:
                        item = work.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    index = router.pick()
                    router.in_flight[index] += 1
                    try:
                        result = await one_request(
                            clients[index], item, model=model, max_tokens=options.max_tokens, concurrency=level, t0=t0
                        )
                    finally:
                        router.in_flight[index] -= 1
                    result.endpoint = urls[index]
                    run.llm.append(result)
                    progress.on_result(result)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - t0
        run.footer = RunFooter(duration_s=duration)
        progress.on_end("completed", duration)
        return run
