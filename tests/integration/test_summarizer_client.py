"""The gateway client against the simulator over real HTTP: TTFT, headers, storms, broken streams."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from services.common.settings import LlmSettings
from services.runtime.processes import free_port
from services.runtime.sim import SimConfig, SimLlmServer
from services.summarizer.client import (
    ChatClient,
    LlmRequestError,
    LlmStreamError,
    LlmUnavailableError,
    RetryPolicy,
    parse_retry_after,
)

MESSAGES = [{"role": "system", "content": "Summarize."}, {"role": "user", "content": "the meeting was about budgets"}]


def _client(sim: SimLlmServer, **retry: float) -> ChatClient:
    settings = LlmSettings(base_url=sim.base_url, model=sim.config.model, max_tokens=16, timeout_s=10)
    return ChatClient(settings, retry=RetryPolicy(**retry) if retry else RetryPolicy(deadline_s=5), seed=1)


async def test_recorded_ttft_within_five_percent_of_configured() -> None:
    config = SimConfig(model="m", ttft=0.4, itl=0.005)
    with SimLlmServer(config, isolated=True) as sim:  # its own process: the GIL is not shared with us
        async with _client(sim) as client:
            await client.chat(MESSAGES)  # warm the connection
            results = [await client.chat(MESSAGES) for _ in range(5)]
    ttft = statistics.median(r.ttft_s for r in results)
    assert abs(ttft - config.ttft) / config.ttft < 0.05, ttft
    result = results[0]
    assert result.tokens_out == 16 and result.usage_reported and result.tokens_in > 0
    assert len(result.itl_s) == 15 and statistics.median(result.itl_s) >= config.itl * 0.9
    assert result.generation_s >= 15 * config.itl * 0.9
    assert result.text


async def test_objective_header_follows_priority() -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        async with _client(sim) as client:
            await client.chat(MESSAGES, priority="high")
            await client.chat(MESSAGES, priority="low")
            await client.chat(MESSAGES)  # the default priority is normal
        assert sim.engine is not None
        # The simulator counts the header by its GAIE name, so these counts prove what went on the wire.
        assert dict(sim.engine.objectives) == {"interactive": 1, "batch": 1, "standard": 1}


async def test_streams_reuse_their_connections() -> None:
    """Every stream is read to the body's end, so its connection goes back to the pool: stopping at
    ``[DONE]`` made httpx close it, and each summary opened a new TCP (and TLS) connection."""
    connects = 0

    async def trace(event: str, info: dict) -> None:
        nonlocal connects
        connects += event == "connection.connect_tcp.started"

    async def traced(request) -> None:
        request.extensions["trace"] = trace

    with SimLlmServer(SimConfig(model="m")) as sim:
        async with _client(sim) as client:
            client.http.event_hooks["request"].append(traced)
            for _ in range(5):
                assert (await client.chat(MESSAGES)).text
            assert connects == 1
            await asyncio.gather(*(client.chat(MESSAGES) for _ in range(8)))
            assert connects <= 8  # at most one per concurrent stream


async def test_storm_of_429_and_503_ends_in_success() -> None:
    config = SimConfig(model="m", failure_rate=0.6, retry_after=0.01, seed=3)
    with SimLlmServer(config) as sim:
        async with _client(sim, deadline_s=20, base_s=0.01, max_s=0.05) as client:
            results = await asyncio.gather(*(client.chat(MESSAGES) for _ in range(20)))
    assert all(r.text for r in results)
    assert sum(r.attempts for r in results) > 20  # some were retried


async def test_endless_storm_ends_in_retryable_error_after_deadline() -> None:
    with SimLlmServer(SimConfig(model="m", failure_rate=1.0, retry_after=0.05)) as sim:
        async with _client(sim, deadline_s=0.5, base_s=0.01, max_s=0.05) as client:
            with pytest.raises(LlmUnavailableError, match="still unavailable") as caught:
                await client.chat(MESSAGES)
    assert caught.value.retryable and caught.value.attempts >= 3


async def test_retry_after_is_honoured() -> None:
    with SimLlmServer(SimConfig(model="m", failure_rate=1.0, retry_after=0.3)) as sim:
        async with _client(sim, deadline_s=0.5, base_s=0.001, max_s=0.002) as client:
            with pytest.raises(LlmUnavailableError) as caught:
                await client.chat(MESSAGES)
    assert caught.value.attempts == 2  # 0.3 s waits: a third attempt would pass the deadline


async def test_connection_refused_is_retried_then_unavailable() -> None:
    settings = LlmSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    async with ChatClient(settings, retry=RetryPolicy(deadline_s=0.3, base_s=0.01, max_s=0.05)) as client:
        with pytest.raises(LlmUnavailableError, match="cannot connect"):
            await client.chat(MESSAGES)


@pytest.mark.parametrize(("fault", "match"), [("malformed", "not JSON"), ("drop", "dropped")])
async def test_broken_stream_is_a_clear_error(fault: str, match: str) -> None:
    with SimLlmServer(SimConfig(model="m", fault=fault)) as sim:  # type: ignore[arg-type]
        async with _client(sim) as client:
            with pytest.raises(LlmStreamError, match=match):
                await client.chat(MESSAGES)


async def test_bad_request_is_permanent() -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        settings = LlmSettings(base_url=sim.base_url, model="not-served")
        async with ChatClient(settings) as client:
            with pytest.raises(LlmRequestError, match="404"):
                await client.chat(MESSAGES)


def test_parse_retry_after() -> None:
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
