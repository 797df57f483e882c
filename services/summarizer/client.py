"""A streaming OpenAI-compatible chat client that a GAIE/llm-d gateway can schedule well.

- streams ``/v1/chat/completions`` (SSE) and times the first token (TTFT), every gap between
  tokens (ITL) and the generation; token counts come from the final ``usage`` chunk
  (``stream_options.include_usage``), or are counted from the deltas when a server omits it;
- sends ``x-gateway-inference-objective`` (the priority's InferenceObjective), so the endpoint
  picker can put interactive work first;
- treats 429/503 (and 502/504, and connection errors before any token) as shed load: retries
  with exponential backoff and full jitter, honouring ``Retry-After``, until a deadline, then
  raises :class:`LlmUnavailableError` (a :class:`TemporaryError`);
- a malformed stream (data that is not a JSON object, an error chunk) or one that ends before
  ``[DONE]`` is :class:`LlmStreamError`, with what was received, never a silently truncated
  summary. Parsing and timing are :mod:`services.common.openai_stream`, shared with loadgen.

Errors::

    KubescribeError
    ├── TemporaryError
    │   ├── LlmUnavailableError   shed load / unreachable until the retry deadline
    │   └── OpenAIStreamError
    │       └── LlmStreamError    malformed SSE, or the stream dropped mid-way
    └── PermanentError
        └── LlmRequestError       4xx other than 429 (bad model name, prompt too long)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.common.errors import PermanentError, TemporaryError
from services.common.events import Priority
from services.common.http_transport import asyncio_transport
from services.common.openai_stream import OpenAIStreamError, read_completion_stream
from services.common.settings import LlmSettings, SummarizerSettings

logger = logging.getLogger(__name__)

LLMD_OBJECTIVE_HEADER = "x-llm-d-inference-objective"  # llm-d-router; the GAIE name below is its deprecated alias
OBJECTIVE_HEADER = "x-gateway-inference-objective"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Shed load or a gateway without a ready endpoint: the same request may succeed later."""


class LlmUnavailableError(TemporaryError):
    """The gateway kept shedding load (or could not be reached) until the retry deadline."""

    def __init__(self, message: str, *, delay: float = 1.0, attempts: int = 1) -> None:
        super().__init__(message, delay=delay)
        self.attempts = attempts


class LlmStreamError(OpenAIStreamError):
    """The response stream was malformed or ended early; a retry may get a whole one."""


class LlmRequestError(PermanentError):
    """The gateway rejected the request itself (4xx): retrying the same request cannot help."""


@dataclass
class ChatResult:
    """One completion and how long it took, as the client saw it."""

    text: str
    model: str
    ttft_s: float
    generation_s: float
    total_s: float
    tokens_in: int
    tokens_out: int
    itl_s: list[float] = field(default_factory=list)
    attempts: int = 1
    finish_reason: str | None = None
    usage_reported: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter up to a deadline (seconds from the first attempt)."""

    deadline_s: float = 120.0
    base_s: float = 0.25
    max_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: SummarizerSettings) -> RetryPolicy:
        return cls(settings.retry_deadline_s, settings.backoff_base_s, settings.backoff_max_s)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1``: at least ``Retry-After`` when the server sent one."""
        backoff = rng.uniform(0, min(self.max_s, self.base_s * (2 ** (attempt - 1))))
        if retry_after is not None:
            return max(retry_after, backoff * 0.1) + rng.uniform(0, min(retry_after, self.base_s) * 0.2)
        return backoff


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def objective_for(priority: Priority | str, settings: LlmSettings) -> str | None:
    """The GAIE InferenceObjective name for a priority (``None``: send no header)."""
    return settings.objectives.get(Priority(priority).value)


def instrument_httpx() -> None:
    """Trace every gateway request (OpenTelemetry httpx instrumentation), once per process."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:  # pragma: no cover - the dependency is declared
        return
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


class ChatClient:
    """Streams chat completions from one OpenAI-compatible base URL; reuse one per process.

    ``http`` lets callers share a client; by default the connection pool is sized for
    ``max_connections`` concurrent streams so a burst never waits for a socket.
    """

    def __init__(
        self,
        settings: LlmSettings | None = None,
        *,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        max_connections: int = 128,
        seed: int | None = None,
    ) -> None:
        self.settings = settings or LlmSettings()
        self.retry = retry or RetryPolicy()
        headers = {"Accept": "text/event-stream"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        self._owns_http = http is None
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = http or httpx.AsyncClient(
            base_url=self.settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(self.settings.timeout_s, connect=10.0),
            limits=limits,
            transport=asyncio_transport(limits=limits),  # a streamed token costs a third less CPU
        )
        self._rng = random.Random(seed)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def request_body(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "model": self.settings.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        if response_format is not None:  # OpenAI's structured output; llama.cpp and vLLM enforce the schema
            body["response_format"] = response_format
        return body

    async def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        priority: Priority | str = Priority.normal,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        on_attempt: Callable[[int, str], Awaitable[None] | None] | None = None,
    ) -> ChatResult:
        """One streamed completion, retried on shed load until the policy's deadline."""
        body = self.request_body(messages, max_tokens=max_tokens, response_format=response_format)
        headers = {}
        objective = objective_for(priority, self.settings)
        if objective:
            headers[LLMD_OBJECTIVE_HEADER] = headers[OBJECTIVE_HEADER] = objective
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._stream_once(body, headers)
                result.attempts = attempt
                return result
            except _Retryable as exc:
                elapsed = time.monotonic() - started
                wait = self.retry.delay(attempt, exc.retry_after, self._rng)
                if elapsed + wait > self.retry.deadline_s:
                    raise LlmUnavailableError(
                        f"LLM gateway {self.settings.base_url} still unavailable after {attempt} attempts in "
                        f"{elapsed:.1f}s (last: {exc}); retry later or raise KUBESCRIBE_SUMMARIZER_RETRY_DEADLINE_S",
                        delay=max(wait, 1.0),
                        attempts=attempt,
                    ) from exc
                logger.debug("attempt %d: %s; retrying in %.3fs", attempt, exc, wait)
                if on_attempt is not None:
                    maybe = on_attempt(attempt, str(exc))
                    if maybe is not None:
                        await maybe
                await asyncio.sleep(wait)

    async def _stream_once(self, body: dict[str, Any], headers: dict[str, str]) -> ChatResult:
        sent = time.perf_counter()
        responded = False
        try:
            async with self.http.stream("POST", "chat/completions", json=body, headers=headers) as response:
                responded = True
                if response.status_code != 200:
                    await _raise_for_status(response)
                return await _read_stream(response, sent, self.settings.model)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retryable(f"cannot connect: {exc!r}", None) from exc
        except httpx.RemoteProtocolError as exc:
            if not responded:  # closed before any response: a connection problem, not a broken stream
                raise _Retryable(f"connection closed before a response: {exc}", None) from exc
            raise LlmStreamError(f"LLM stream from {self.settings.base_url} dropped: {exc}") from exc
        except httpx.ReadTimeout as exc:
            raise LlmStreamError(
                f"LLM stream from {self.settings.base_url} stalled for more than {self.settings.timeout_s}s"
            ) from exc


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def _raise_for_status(response: httpx.Response) -> None:
    raw = (await response.aread())[:2000].decode(errors="replace")
    try:
        detail = json.loads(raw).get("error", {}).get("message") or raw
    except (ValueError, AttributeError):
        detail = raw
    if response.status_code in RETRY_STATUSES:
        raise _Retryable(
            f"HTTP {response.status_code}: {detail.strip()[:200]}",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    if 400 <= response.status_code < 500:
        raise LlmRequestError(f"LLM gateway rejected the request with HTTP {response.status_code}: {detail.strip()}")
    raise LlmStreamError(f"LLM gateway answered HTTP {response.status_code}: {detail.strip()[:500]}")


async def _read_stream(response: httpx.Response, sent: float, model: str) -> ChatResult:
    """Read the stream with the shared reader; one that ends before ``[DONE]`` is an error, not a short summary."""
    try:
        stream = await read_completion_stream(response, sent, model=model)
    except OpenAIStreamError as exc:
        raise LlmStreamError(str(exc).replace("LLM server", "LLM gateway")) from exc
    if not stream.done:
        raise LlmStreamError(
            f"LLM stream ended before [DONE] after {stream.deltas} tokens "
            f"(finish_reason={stream.finish_reason!r}): the gateway dropped it"
        )
    end = stream.ended_at or time.perf_counter()
    first_at = stream.first_at if stream.first_at is not None else end
    last_at = stream.last_at if stream.last_at is not None else sent
    return ChatResult(
        text=stream.text.strip(),
        model=stream.model or model,
        ttft_s=first_at - sent,
        generation_s=last_at - first_at if stream.deltas else 0.0,
        total_s=end - sent,
        tokens_in=stream.tokens_in or 0,
        tokens_out=stream.tokens_out,
        itl_s=stream.itl_s,
        finish_reason=stream.finish_reason,
        usage_reported=stream.usage is not None,
    )
