"""The local endpoint picker's scoring: a stand-in for GAIE/llm-d's EPP, not a port of it.

llm-d's endpoint picker scores every replica with weighted scorers and sends the request to the
best one. This module keeps the same three signals, each normalised to [0, 1] (higher is better):

- **queue**: ``vllm:num_requests_waiting`` scraped from the replica, ``(max - q) / (max - min)``
  over the candidates, as GAIE's queue scorer does;
- **kv-cache utilisation**: ``1 - vllm:kv_cache_usage_perc``;
- **prefix-cache affinity**: the fraction of the prompt's leading blocks the picker last sent to
  that replica. This is the *approximate* prefix scorer (an index of what the picker routed,
  LRU-bounded per replica); llm-d's *precise* scorer reads the replicas' KV-cache events
  instead, which this stand-in does not reproduce.

Default weights follow llm-d's inference-scheduling guide (prefix 3, queue 2, kv-cache 2). The
metrics come from :class:`MetricsScraper` every ``interval`` seconds, so decisions use data up to
one interval old, the staleness a real picker has (llm-d's EPP refreshes every 50 ms by default).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import random
import time
from dataclasses import dataclass, field

import httpx

PREFIX_BLOCK_CHARS = 256
"""Characters per prefix block: the picker has no tokenizer, so it hashes text as GAIE's plugin does."""


@dataclass
class EndpointState:
    """What the picker last scraped from one replica's ``/metrics``."""

    address: str
    """``ip:port``, the value of ``x-gateway-destination-endpoint``."""
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    scraped_at: float = 0.0
    healthy: bool = True


@dataclass
class Weights:
    prefix: float = 3.0
    queue: float = 2.0
    kv: float = 2.0


def prompt_of(body: bytes) -> str:
    """The text whose prefix decides cache affinity: chat messages or a completion prompt; '' if none."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("messages"), list):
        return "\n".join(str(m.get("content", "")) for m in data["messages"] if isinstance(m, dict))
    prompt = data.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def prefix_blocks(text: str, block_chars: int = PREFIX_BLOCK_CHARS) -> list[bytes]:
    """Hash-chain keys of the text's full blocks, so a key stands for the whole prefix up to it."""
    digest = hashlib.blake2b(digest_size=12)
    keys = []
    for start in range(0, len(text) - block_chars + 1, block_chars):
        digest.update(text[start : start + block_chars].encode())
        keys.append(digest.digest())
    return keys


class PrefixIndex:
    """Per replica, the prefix blocks the picker routed there (LRU, ``capacity`` blocks each)."""

    def __init__(self, capacity: int = 31250) -> None:
        self.capacity = capacity
        self._blocks: dict[str, collections.OrderedDict[bytes, None]] = collections.defaultdict(collections.OrderedDict)

    def match(self, address: str, keys: list[bytes]) -> int:
        held = self._blocks[address]
        matched = 0
        for key in keys:
            if key not in held:
                break
            matched += 1
        return matched

    def record(self, address: str, keys: list[bytes]) -> None:
        held = self._blocks[address]
        for key in keys:
            held[key] = None
            held.move_to_end(key)
        while len(held) > self.capacity:
            held.popitem(last=False)


@dataclass
class Picker:
    """Weighted scorers over the scraped endpoint states; ties broken at random."""

    endpoints: list[EndpointState]
    weights: Weights = field(default_factory=Weights)
    index: PrefixIndex = field(default_factory=PrefixIndex)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    picks: collections.Counter[str] = field(default_factory=collections.Counter)

    def pick(self, prompt: str) -> str:
        candidates = [e for e in self.endpoints if e.healthy] or self.endpoints
        keys = prefix_blocks(prompt)
        queues = [e.waiting for e in candidates]
        low, high = min(queues), max(queues)
        best: list[EndpointState] = []
        best_score = float("-inf")
        for endpoint in candidates:
            queue = 1.0 if high == low else (high - endpoint.waiting) / (high - low)
            kv = 1.0 - min(1.0, max(0.0, endpoint.kv_usage))
            prefix = self.index.match(endpoint.address, keys) / len(keys) if keys else 0.0
            score = self.weights.prefix * prefix + self.weights.queue * queue + self.weights.kv * kv
            if score > best_score + 1e-9:
                best, best_score = [endpoint], score
            elif abs(score - best_score) <= 1e-9:
                best.append(endpoint)
        chosen = self.rng.choice(best)
        self.index.record(chosen.address, keys)
        self.picks[chosen.address] += 1
        return chosen.address


def parse_metrics(text: str) -> dict[str, float]:
    """The vLLM gauges the scorers use, from Prometheus text (summed over label sets)."""
    wanted = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            with contextlib.suppress(ValueError, IndexError):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


class MetricsScraper:
    """Refreshes every endpoint's state from ``http://ip:port/metrics`` each ``interval`` seconds."""

    def __init__(self, endpoints: list[EndpointState], interval: float) -> None:
        self.endpoints = endpoints
        self.interval = interval
        self.scrapes = 0

    async def scrape_once(self, client: httpx.AsyncClient) -> None:
        async def one(endpoint: EndpointState) -> None:
            try:
                response = await client.get(f"http://{endpoint.address}/metrics")
                response.raise_for_status()
            except httpx.HTTPError:
                endpoint.healthy = False
                return
            values = parse_metrics(response.text)
            endpoint.waiting = values.get("vllm:num_requests_waiting", 0.0)
            endpoint.running = values.get("vllm:num_requests_running", 0.0)
            endpoint.kv_usage = values.get("vllm:kv_cache_usage_perc", 0.0)
            endpoint.scraped_at = time.monotonic()
            endpoint.healthy = True

        await asyncio.gather(*(one(e) for e in self.endpoints))
        self.scrapes += 1

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
            while True:
                await self.scrape_once(client)
                await asyncio.sleep(self.interval)
