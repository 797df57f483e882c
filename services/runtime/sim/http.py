"""The simulator's HTTP surface: OpenAI's completion routes (streaming or not), models, health, metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.runtime.sim.engine import RequestError, SimEngine, SimRequest


def _usage(request: SimRequest, tokens: int) -> dict[str, int]:
    prompt = len(request.prompt_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}


def _chunk(request: SimRequest, rid: str, created: int, delta: str | None, finish: str | None, first: bool) -> bytes:
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

    def error(exc: RequestError) -> JSONResponse:
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
            return error(RequestError(400, "request body is not valid JSON"))
        try:
            parsed = engine.parse(body, chat=chat)
            engine.maybe_fail()
        except RequestError as exc:
            return error(exc)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if parsed.stream:
            return _SseResponse(_stream(parsed, rid, created))
        async with engine.slot(parsed) as prefill:
            await engine.prefill(prefill)
            first = time.perf_counter()
            for _ in range(len(parsed.output) - 1):
                delay = engine.token_delay()
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
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

    async def _stream(parsed: SimRequest, rid: str, created: int) -> AsyncIterator[bytes]:
        async with engine.slot(parsed) as prefill:
            await engine.prefill(prefill)
            first_at = time.perf_counter()
            sent = 0
            last = first_at
            step = max(1, config.stream_interval)
            starts = [0, *range(1, len(parsed.output), step)]  # the first token alone, then ``step`` per chunk
            for index in starts:
                tokens = parsed.output[index : index + (step if index else 1)]
                if index:
                    delay = sum(engine.token_delay() for _ in tokens)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    now = time.perf_counter()
                    engine.metrics.itl.observe((now - last) / len(tokens))
                    last = now
                text = " ".join(tokens) if index == 0 else " " + " ".join(tokens)
                yield _chunk(parsed, rid, created, text, None, first=index == 0)
                sent += len(tokens)
                if config.fault == "malformed" and sent >= 2:
                    yield b"data: {not json\n\n"
                    return
                if config.fault == "drop" and sent >= 2:
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
