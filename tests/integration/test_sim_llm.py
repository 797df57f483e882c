"""The vLLM simulator over real HTTP: OpenAI shapes, timing model, queueing, prefix cache, failures."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from services.runtime.sim import SimConfig, SimLlmServer


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_endpoints_and_usage() -> None:
    with SimLlmServer(SimConfig(model="m", mode="echo")) as sim:
        assert sim.base_url.endswith("/v1")
        assert httpx.get(f"{sim.url}/health").status_code == 200
        assert httpx.get(f"{sim.base_url}/models").json()["data"][0]["id"] == "m"
        body = {"model": "m", "messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 2}
        answer = httpx.post(f"{sim.base_url}/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "one two"
        assert answer["usage"]["completion_tokens"] == 2
        wrong = httpx.post(f"{sim.base_url}/chat/completions", json={**body, "model": "other"})
        assert wrong.status_code == 404 and "does not exist" in wrong.json()["error"]["message"]
        bad = httpx.post(f"{sim.base_url}/chat/completions", content=b"{nope")
        assert bad.status_code == 400
        text = httpx.post(f"{sim.base_url}/completions", json={"model": "m", "prompt": "a b c", "max_tokens": 5}).json()
        assert text["choices"][0]["text"] == "a b c"


def test_stream_honours_max_tokens_and_sends_usage() -> None:
    with SimLlmServer(SimConfig(model="m")) as sim:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.stream("POST", f"{sim.base_url}/chat/completions", json=body) as response:
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        assert '"completion_tokens":7' in lines[-2]
        assert sum('"content"' in line for line in lines) == 7


def test_context_length_is_enforced() -> None:
    with SimLlmServer(SimConfig(model="m", max_model_len=32)) as sim:
        body = {"model": "m", "messages": [{"role": "user", "content": "word " * 40}], "max_tokens": 4}
        response = httpx.post(f"{sim.base_url}/chat/completions", json=body)
        assert response.status_code == 400 and "maximum context length" in response.text


def test_prefix_cache_hits_skip_prefill() -> None:
    prefix = "shared instructions " * 100
    config = SimConfig(model="m", ttft=0.0, ttft_per_token=0.001, block_size=16)
    with SimLlmServer(config) as sim, httpx.Client() as client:  # one client: no TLS-context build per request

        def ttft(suffix: str) -> float:
            body = {"model": "m", "messages": [{"role": "user", "content": prefix + suffix}], "max_tokens": 1}
            start = time.perf_counter()
            client.post(f"{sim.base_url}/chat/completions", json=body)
            return time.perf_counter() - start

        cold = ttft("first")
        warm = ttft("second")
        assert warm < cold / 2
        metrics = httpx.get(f"{sim.url}/metrics").text
        assert _metric(metrics, "vllm:prefix_cache_hits_total") >= 192
        assert _metric(metrics, "vllm:prefix_cache_queries_total") > _metric(metrics, "vllm:prefix_cache_hits_total")
        # As in vLLM, usage counts blocks that running requests reference (cached idle blocks are
        # free), so it is read while a request holds its blocks.
        body = {"model": "m", "messages": [{"role": "user", "content": "other " * 300}], "max_tokens": 1}
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(httpx.post, f"{sim.base_url}/chat/completions", json=body)
            time.sleep(0.1)
            during = httpx.get(f"{sim.url}/metrics").text
            running.result()
        assert 0 < _metric(during, "vllm:kv_cache_usage_perc") < 1


async def test_max_num_seqs_queues_the_rest() -> None:
    config = SimConfig(model="m", ttft=0.2, max_num_seqs=2)
    with SimLlmServer(config) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
            tasks = [asyncio.create_task(client.post("/chat/completions", json=body)) for _ in range(6)]
            await asyncio.sleep(0.1)
            metrics = (await client.get(f"{sim.url}/metrics")).text
            assert _metric(metrics, "vllm:num_requests_running") == 2
            assert _metric(metrics, "vllm:num_requests_waiting") == 4
            await asyncio.gather(*tasks)
        assert sim.engine is not None and sim.engine.peak_running == 2
        final = httpx.get(f"{sim.url}/metrics").text
        assert _metric(final, "vllm:num_requests_running") == 0
        assert _metric(final, "vllm:time_to_first_token_seconds_count") == 6


def test_failure_injection_sends_retry_after() -> None:
    with SimLlmServer(SimConfig(model="m", failure_rate=1.0, failure_codes=(503,), retry_after=2)) as sim:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        response = httpx.post(f"{sim.base_url}/chat/completions", json=body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "2"


def test_isolated_subprocess_mode() -> None:
    with SimLlmServer(SimConfig(model="m"), isolated=True) as sim:
        assert httpx.get(f"{sim.base_url}/models").json()["data"][0]["id"] == "m"
        with pytest.raises(RuntimeError):
            _ = sim.peak_running


_CLIENT = httpx.Client(timeout=30)
"""One client for the timed helpers: httpx builds a TLS context per throwaway client (~0.1 s under load)."""


def _timed_ttft(sim: SimLlmServer, content: str, max_tokens: int = 1) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": True}
    start = time.perf_counter()
    with _CLIENT.stream("POST", f"{sim.base_url}/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                return time.perf_counter() - start
    raise AssertionError("no content token")


def test_ttft_grows_with_prompt_length_and_shrinks_on_a_prefix_hit() -> None:
    config = SimConfig(model="m", ttft=0.01, ttft_per_token=0.0002, block_size=16)
    with SimLlmServer(config) as sim:
        short = _timed_ttft(sim, "alpha " * 100)
        long = _timed_ttft(sim, "beta " * 1500)
        assert long > short + 0.15  # 1400 more uncached tokens x 0.2 ms
        again = _timed_ttft(sim, "beta " * 1500 + "and a new question")
        assert again < long / 3  # the 1500-token prefix is cached now


def test_default_max_num_seqs_is_vllms() -> None:
    assert SimConfig().max_num_seqs == 256


async def test_kv_capacity_makes_requests_wait() -> None:
    # 10 blocks of 16 tokens; each request needs ceil((~64 + 16) / 16) = 5+ blocks: one at a time.
    config = SimConfig(model="m", ttft=0.3, block_size=16, kv_cache_blocks=10, max_num_seqs=256)
    with SimLlmServer(config) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
            tasks = [
                asyncio.create_task(
                    client.post(
                        "/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": f"{i} " * 60}], "max_tokens": 16},
                    )
                )
                for i in range(3)
            ]
            await asyncio.sleep(0.15)
            metrics = (await client.get(f"{sim.url}/metrics")).text
            assert _metric(metrics, "vllm:num_requests_running") == 1
            assert _metric(metrics, "vllm:num_requests_waiting") == 2
            assert _metric(metrics, "vllm:kv_cache_usage_perc") > 0.5
            answers = await asyncio.gather(*tasks)
        assert all(a.status_code == 200 for a in answers)
        too_big = httpx.post(
            f"{sim.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x " * 400}], "max_tokens": 4},
        )
        assert too_big.status_code == 400 and "KV-cache blocks" in too_big.text


async def test_itl_grows_with_the_running_batch() -> None:
    config = SimConfig(model="m", itl=0.001, itl_per_seq=0.005, max_num_seqs=256)
    with SimLlmServer(config) as sim:
        alone = await asyncio.to_thread(_timed_stream, sim)
        crowd = await asyncio.gather(*(asyncio.to_thread(_timed_stream, sim) for _ in range(8)))
        assert sorted(crowd)[len(crowd) // 2] > 2 * alone  # 8 running: ITL ~ 0.041 s against ~0.006 s alone


def _timed_stream(sim: SimLlmServer) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 40, "stream": True}
    start = time.perf_counter()
    with _CLIENT.stream("POST", f"{sim.base_url}/chat/completions", json=body) as response:
        for _ in response.iter_lines():
            pass
    return time.perf_counter() - start
