"""The LLM-only benchmark against the simulator reproduces the simulator's configured latencies."""

from __future__ import annotations

import statistics

import httpx
import pytest

from loadgen.llm import LlmOptions, benchmark
from loadgen.make import make_prompts
from loadgen.report import summarize_llm

sim_llm = pytest.importorskip("services.runtime.sim", reason="the simulator (services/runtime/sim)")

TTFT = 0.15
ITL = 0.01


def server_ttft_mean(url: str) -> float:
    """Mean TTFT the simulator itself recorded (vllm:time_to_first_token_seconds)."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for suffix in ("sum", "count"):
            if line.startswith(f"vllm:time_to_first_token_seconds_{suffix}"):
                values[suffix] = float(line.rsplit(" ", 1)[1])
    return values["sum"] / values["count"]


@pytest.fixture
def sim():
    config = sim_llm.SimConfig(ttft=TTFT, itl=ITL, max_num_seqs=8, default_max_tokens=16)
    with sim_llm.SimLlmServer(config, host="127.0.0.1", port=0) as server:
        yield server


async def test_reproduces_configured_ttft_and_itl(sim):
    run = await benchmark(
        sim.base_url,
        make_prompts(8, seed=1, max_tokens=12),
        LlmOptions(name="sim", concurrencies=(1, 4), requests=8, max_tokens=12),
    )
    assert len(run.llm) == 16 and not [r for r in run.llm if r.error]
    one_at_a_time = [r.ttft_s for r in run.llm if r.concurrency == 1]
    four = [r.ttft_s for r in run.llm if r.concurrency == 4]
    # Below max_num_seqs nothing queues, so the client sees the configured TTFT plus HTTP overhead
    # (the simulator runs in a thread of this process, so concurrent streams also share the GIL).
    # Tolerances allow for a loaded 2-core machine; the server's own histogram is the cross-check.
    assert statistics.median(one_at_a_time) == pytest.approx(TTFT, rel=0.10)
    assert statistics.median(four) == pytest.approx(TTFT, rel=0.25)
    assert min(one_at_a_time + four) >= TTFT * 0.98
    server_mean = server_ttft_mean(sim.url)
    assert server_mean == pytest.approx(TTFT, rel=0.05)
    assert 0 <= statistics.mean(one_at_a_time + four) - server_mean < 0.25 * TTFT
    assert statistics.median(r.itl_s for r in run.llm) == pytest.approx(ITL, rel=0.30)
    assert all(r.tokens_out == 12 for r in run.llm), "max_tokens honoured, counted from usage"
    assert run.header.options["model"] == "kubescribe-sim"

    summary = summarize_llm(run)
    assert set(summary["concurrency"]) == {"1", "4"}
    level4 = summary["concurrency"]["4"]
    level1 = summary["concurrency"]["1"]
    assert level4["requests"] == 8 and level4["errors"] == 0
    # Four at once finish the same work in far less wall time than one at a time.
    assert level4["output_tokens_per_s"] > 2.5 * level1["output_tokens_per_s"]


async def test_queueing_beyond_max_num_seqs_shows_in_ttft(sim):
    run = await benchmark(
        sim.base_url,
        make_prompts(4, seed=2, max_tokens=8),
        LlmOptions(concurrencies=(16,), requests=16, max_tokens=8),
    )
    ttft = sorted(r.ttft_s for r in run.llm)
    # 16 requests against 8 slots: the second half waits for a whole first-half request.
    assert ttft[-1] > ttft[0] + 7 * ITL


async def test_errors_are_recorded_not_raised(sim):
    run = await benchmark(
        sim.base_url,
        make_prompts(2, seed=3),
        LlmOptions(concurrencies=(2,), requests=2, model="no-such-model"),
    )
    assert all(r.error and r.status == 404 for r in run.llm)


async def test_least_loaded_routing_beats_random_across_replicas():
    """The local analogue of gateway versus random routing: two replicas with 2 slots each and
    4 requests in flight. Least-loaded never queues; random sometimes sends 3 to one replica."""
    config = sim_llm.SimConfig(ttft=0.05, itl=0.01, max_num_seqs=2)
    with sim_llm.SimLlmServer(config) as first, sim_llm.SimLlmServer(config) as second:
        urls = [first.base_url, second.base_url]
        prompts = make_prompts(4, seed=4, max_tokens=10)
        runs = {
            routing: await benchmark(
                urls, prompts, LlmOptions(name=routing, concurrencies=(4,), requests=24, routing=routing, seed=1)
            )
            for routing in ("random", "least-loaded")
        }
    worst = {routing: max(r.ttft_s for r in run.llm) for routing, run in runs.items()}
    assert not [r for run in runs.values() for r in run.llm if r.error]
    assert {r.endpoint for r in runs["least-loaded"].llm} == set(urls)
    # A queued request waits for a whole request (~0.05 + 9 * 0.01 s) before its first token.
    assert worst["random"] > worst["least-loaded"] + 0.07, worst


@pytest.mark.parametrize(("fault", "match"), [("malformed", "not JSON"), ("drop", "RemoteProtocolError")])
async def test_broken_streams_are_recorded_errors(fault, match):
    """The benchmark reads streams with the summarizer's reader: a broken one is an error row, never a raise."""
    config = sim_llm.SimConfig(ttft=0.01, itl=0.005, fault=fault)
    with sim_llm.SimLlmServer(config) as server:
        run = await benchmark(
            server.base_url, make_prompts(2, seed=5), LlmOptions(concurrencies=(2,), requests=2, max_tokens=8)
        )
    assert len(run.llm) == 2
    assert all(r.error and match in r.error for r in run.llm), [r.error for r in run.llm]
