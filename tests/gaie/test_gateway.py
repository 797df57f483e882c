"""The local GAIE stand-in: real Envoy in front of simulator replicas, RANDOM vs the ext_proc picker."""

from __future__ import annotations

import httpx
import pytest

from services.runtime.gateway import EndpointState, GatewayError, GatewayStack, Picker, bootstrap
from services.runtime.gateway.scoring import parse_metrics
from services.runtime.sim import SimConfig


def _counter(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _ask(base_url: str, content: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=30) as response:
        response.read()
        return response


def test_bootstrap_rejects_what_envoy_cannot_route() -> None:
    with pytest.raises(GatewayError, match="unknown gateway policy 'round-robin'"):
        bootstrap(port=1, admin_port=2, replicas=[("127.0.0.1", 3)], policy="round-robin")
    with pytest.raises(GatewayError, match="needs the endpoint picker"):
        bootstrap(port=1, admin_port=2, replicas=[("127.0.0.1", 3)], policy="picker")
    config = bootstrap(port=1, admin_port=2, replicas=[("127.0.0.1", 3)], policy="picker", picker=("127.0.0.1", 4))
    replicas = next(c for c in config["static_resources"]["clusters"] if c["name"] == "replicas")
    assert replicas["type"] == "ORIGINAL_DST"
    assert replicas["original_dst_lb_config"]["http_header_name"] == "x-gateway-destination-endpoint"


def test_picker_scores_prefix_then_queue_then_kv() -> None:
    a, b = EndpointState("10.0.0.1:8000"), EndpointState("10.0.0.2:8000")
    picker = Picker([a, b])
    prompt = "transcript " * 400
    first = picker.pick(prompt)
    assert all(picker.pick(prompt + f" question {i}") == first for i in range(5)), "prefix affinity"
    other = b if first == a.address else a
    chosen = a if first == a.address else b
    chosen.waiting, chosen.kv_usage = 30, 0.9  # a busy replica loses against an idle one without the prefix
    assert picker.pick("a different transcript " * 400) == other.address
    assert parse_metrics(
        'vllm:num_requests_waiting{model_name="m"} 3.0\n# x\nvllm:kv_cache_usage_perc{a="b"} 0.5\n'
    ) == {
        "vllm:num_requests_waiting": 3.0,
        "vllm:kv_cache_usage_perc": 0.5,
    }


@pytest.mark.parametrize("policy", ["random", "least-request"])
def test_envoy_spreads_requests_over_the_replicas(policy: str) -> None:
    with GatewayStack(SimConfig(model="m"), 2, policy) as gateway:
        assert httpx.get(f"{gateway.base_url}/models").json()["data"][0]["id"] == "m"
        for i in range(24):
            assert _ask(gateway.base_url, f"prompt number {i} " * 20).status_code == 200
        served = [_counter(url, "vllm:request_success_total") for url in gateway.replica_urls]
        assert sum(served) == 24 and min(served) >= 3, served


def test_ext_proc_picker_keeps_a_prompt_on_the_replica_that_cached_it() -> None:
    config = SimConfig(model="m", ttft_per_token=0.0001)
    with GatewayStack(config, 2, "picker", interval=0.02) as gateway:
        transcripts = [f"transcript {k} says " + f"word{k} " * 600 for k in range(4)]
        for round_ in range(4):
            for text in transcripts:
                assert _ask(gateway.base_url, text + f" question {round_}").status_code == 200
        hits = sum(_counter(url, "vllm:prefix_cache_hits_total") for url in gateway.replica_urls)
        queries = sum(_counter(url, "vllm:prefix_cache_queries_total") for url in gateway.replica_urls)
        # Each transcript is prefilled once (on the replica the picker chose), then hit 3 times.
        assert hits / queries > 0.7
        served = [_counter(url, "vllm:request_success_total") for url in gateway.replica_urls]
        assert sum(served) == 16
    assert all(sim.process is None for sim in gateway.sims) and gateway.picker.process is None
