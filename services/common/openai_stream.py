"""The one reader of OpenAI-compatible streamed completions (``/v1/chat/completions`` SSE).

The summarizer's gateway client, the load generator's LLM benchmark and the summarizer
benchmark all read the same stream, so they share this reader and agree on what a token, a
first token and an inter-token gap are. SSE framing (``data:`` fields, comments, ``event:`` /
``id:`` / ``retry:`` lines, CRLF) is httpx-sse's job; this module adds what is ours:

- the clock: ``sent`` (before the request) → first content delta (TTFT) → every later delta
  (ITL, one gap per delta) → end of stream, all ``time.perf_counter()``;
- the payload: text deltas (chat ``delta.content`` or legacy ``text``), ``finish_reason``, the
  final ``usage`` chunk (``stream_options.include_usage``), the served model name;
- what counts as broken: data that is not a JSON object, or an ``error`` object mid-stream, is
  :class:`OpenAIStreamError`. A stream that ends before ``[DONE]`` is reported (``done`` is
  false), and each caller decides what that means: the summarizer retries, the benchmark
  records an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from services.common.errors import TemporaryError

DONE = "[DONE]"


class OpenAIStreamError(TemporaryError):
    """The stream was not OpenAI SSE (bad framing, non-JSON data, an error chunk); a retry may get a whole one."""


@dataclass
class StreamedCompletion:
    """What one streamed completion said and when, on the client's clock (``perf_counter`` seconds)."""

    sent: float
    """When the request was sent: TTFT and the total are measured from here."""
    model: str | None = None
    parts: list[str] = field(default_factory=list)
    first_at: float | None = None
    last_at: float | None = None
    ended_at: float | None = None
    itl_s: list[float] = field(default_factory=list)
    """One gap per content delta after the first."""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    done: bool = False
    """``[DONE]`` arrived; false means the stream ended (or was cut) before it."""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def deltas(self) -> int:
        """Content deltas received: the token count when the server sends no ``usage``."""
        return len(self.parts)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_at is None else self.first_at - self.sent

    @property
    def tokens_in(self) -> int | None:
        value = (self.usage or {}).get("prompt_tokens")
        return None if value is None else int(value)

    @property
    def tokens_out(self) -> int:
        """``usage.completion_tokens`` when reported (and non-zero), else the deltas counted."""
        return int((self.usage or {}).get("completion_tokens") or self.deltas)

    def add(self, chunk: dict[str, Any]) -> None:
        """Account for one decoded ``data:`` chunk, stamping each content delta as it arrives."""
        if "error" in chunk:
            raise OpenAIStreamError(f"the LLM server reported an error mid-stream: {str(chunk['error'])[:500]}")
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if delta:
                now = time.perf_counter()
                if self.first_at is None:
                    self.first_at = now
                elif self.last_at is not None:
                    self.itl_s.append(now - self.last_at)
                self.last_at = now
                self.parts.append(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]


def decode_chunk(data: str) -> dict[str, Any]:
    """One ``data:`` payload as a JSON object, or :class:`OpenAIStreamError` naming what came instead."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise OpenAIStreamError(f"malformed SSE data from the LLM server (not JSON): {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise OpenAIStreamError(f"malformed SSE data from the LLM server (not an object): {data[:200]!r}")
    return chunk


async def read_completion_stream(
    response: httpx.Response, sent: float, *, model: str | None = None
) -> StreamedCompletion:
    """Read a 200 streaming response until ``[DONE]`` (or its end), timing every content delta.

    ``model`` is the requested name, kept unless a chunk names the served one. httpx errors
    (a dropped connection, a read timeout) propagate unchanged: each caller classifies them.
    """
    completion = StreamedCompletion(sent=sent, model=model)
    events = EventSource(response).aiter_sse()
    try:
        async for event in events:
            if event.data == DONE:
                completion.done = True
                break
            if event.data:
                completion.add(decode_chunk(event.data))
    except SSEError as exc:
        raise OpenAIStreamError(f"not an SSE stream from the LLM server: {exc}") from exc
    completion.ended_at = time.perf_counter()
    if completion.done:
        await _drain(events)
    return completion


DRAIN_S = 1.0
"""How long to wait for the body's end after ``[DONE]`` (servers end it at once)."""


async def _drain(events: AsyncIterator[Any]) -> None:
    """Read the body to its end after ``[DONE]`` so the connection goes back to the pool.

    httpx closes a streamed connection whose body was not read to the end: stopping at
    ``[DONE]`` left the chunked body's last frame unread, and every summary opened a new TCP
    connection to the gateway (a TLS handshake too, in a cluster): 640 connections for 640
    requests, one per request, where one per concurrent stream is enough. A server that keeps
    the body open after ``[DONE]`` costs ``DRAIN_S`` and the connection, as before.
    """
    with contextlib.suppress(httpx.HTTPError, SSEError, TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            async for _ in events:
                pass
