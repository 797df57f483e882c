"""Summarizer CPU per streamed token: what reading a chat completion costs the summarizer itself.

A summary is one streamed chat completion; vLLM sends one SSE chunk per generated token unless
told otherwise, so the summarizer's work grows with the summary's length, not only with the
number of recordings. ``bench/controlplane.py`` asks for 8 tokens and hides this; a real summary
is a few hundred. This bench streams ``--tokens`` tokens per request from the vLLM simulator (its
own process, at ``--itl`` between tokens so chunks arrive one by one as from a GPU) over
``--streams`` concurrent connections and measures this process's CPU time per chunk and per token:

- ``anyio``: httpx's default transport (httpcore on anyio), the baseline any httpx user runs;
- ``asyncio``: the transport the summarizer uses (``services/common/http_transport.py``): the
  same httpx and h11, sockets as asyncio streams.

Both read with the summarizer's own SSE reader (``read_completion_stream``). ``--intervals`` sets
tokens per SSE chunk on the server (the simulator's ``stream_interval``), which moves the cost per
token the most. Rounds alternate the arms; means with 95 % bootstrap intervals, ratio to the
baseline in the same run.

    python bench/summarizer_stream.py                          # 5 rounds, intervals 1 and 8 (~2 min)
    python bench/summarizer_stream.py --rounds 3 --intervals 1,4,16 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadgen.gaie_stats import format_interval, interval  # noqa: E402
from services.common.http_transport import asyncio_transport  # noqa: E402
from services.common.openai_stream import read_completion_stream  # noqa: E402
from services.runtime.sim import SimConfig, SimLlmServer  # noqa: E402

console = Console()
ARMS = ("anyio", "asyncio")


def _client(base: str, arm: str, streams: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    transport = asyncio_transport(limits=limits) if arm == "asyncio" else None
    return httpx.AsyncClient(base_url=base + "/", timeout=60, limits=limits, transport=transport)


async def measure(base: str, arm: str, *, streams: int, requests: int, tokens: int) -> dict[str, float]:
    """CPU seconds of this process per chunk and per token over ``requests`` streamed completions."""
    body = {"model": "bench", "messages": [{"role": "user", "content": "summarize"}], "stream": True}
    body["max_tokens"] = tokens
    async with _client(base, arm, streams) as http:

        async def one() -> tuple[int, int]:
            async with http.stream("POST", "chat/completions", json=body) as response:
                completion = await read_completion_stream(response, time.perf_counter())
            if not completion.done:
                raise RuntimeError("a stream ended before [DONE]")
            return completion.deltas, len(completion.text.split())

        await asyncio.gather(*(one() for _ in range(streams)))  # connections open, code warm
        gate = asyncio.Semaphore(streams)

        async def gated() -> tuple[int, int]:
            async with gate:
                return await one()

        cpu = time.process_time()
        results = await asyncio.gather(*(gated() for _ in range(requests)))
        cpu = time.process_time() - cpu
    chunks = sum(c for c, _ in results)
    return {"cpu_s": cpu, "chunks": chunks, "tokens": requests * tokens, "us_per_chunk": cpu / chunks * 1e6,
            "us_per_token": cpu / (requests * tokens) * 1e6}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256, help="output tokens per request (a summary's length)")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams (the summarizer's concurrency)")
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement")
    parser.add_argument("--itl", type=float, default=0.004, help="seconds between chunks, as a GPU decodes")
    parser.add_argument("--intervals", default="1,8", help="tokens per SSE chunk on the server")
    parser.add_argument("--json", type=Path, help="write every round's records here")
    args = parser.parse_args(argv)
    intervals = [int(i) for i in args.intervals.split(",")]
    records: list[dict] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("streaming", total=len(intervals) * args.rounds * len(ARMS))
        for stream_interval in intervals:
            config = SimConfig(model="bench", itl=args.itl, max_num_seqs=256, stream_interval=stream_interval)
            with SimLlmServer(config, isolated=True) as sim:  # its own process: its CPU is not ours
                for round_ in range(args.rounds):
                    for arm in ARMS if round_ % 2 == 0 else ARMS[::-1]:  # alternate who goes first
                        row = asyncio.run(
                            measure(sim.base_url, arm, streams=args.streams, requests=args.requests, tokens=args.tokens)
                        )
                        records.append({"interval": stream_interval, "round": round_, "arm": arm, **row})
                        progress.advance(task)
    table = Table(title=f"summarizer CPU per streamed token, {args.tokens} tokens x {args.requests} requests, "
                  f"{args.streams} streams, {args.rounds} rounds")  # fmt: skip
    for column in ("tokens per chunk", "transport", "µs per chunk", "µs per token", "ms per summary", "vs anyio"):
        table.add_column(column)
    summary = []
    for stream_interval in intervals:
        of_interval = [r for r in records if r["interval"] == stream_interval]
        base = {r["round"]: r["us_per_token"] for r in of_interval if r["arm"] == "anyio"}
        for arm in ARMS:
            rows = [r for r in of_interval if r["arm"] == arm]
            per_chunk = interval([r["us_per_chunk"] for r in rows])
            per_token = interval([r["us_per_token"] for r in rows])
            ratio = interval([r["us_per_token"] / base[r["round"]] for r in rows])
            per_summary = interval([r["us_per_token"] * args.tokens / 1000 for r in rows])
            summary.append({"interval": stream_interval, "arm": arm, "us_per_chunk": per_chunk,
                            "us_per_token": per_token, "ms_per_summary": per_summary,
                            "ratio_to_anyio": ratio})  # fmt: skip
            table.add_row(str(stream_interval), arm, format_interval(per_chunk, ".0f"),
                          format_interval(per_token, ".1f"), format_interval(per_summary, ".1f"),
                          format_interval(ratio, ".2f"))  # fmt: skip
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        options = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"options": options, "summary": summary, "records": records}, indent=1) + "\n")
        console.print(f"raw records: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
