"""The simulated replica's KV cache: a fixed pool of blocks shared by running requests and the prefix cache.

This follows vLLM's paged KV cache with automatic prefix caching closely enough for scheduling:

- the pool has ``capacity`` blocks of ``block_size`` tokens;
- a running request references one block per full prompt block (keyed by the hash chain of the
  prefix, so two requests with the same prefix share blocks) plus private blocks for the partial
  last prompt block and its output, ``ceil((prompt + output) / block_size)`` in all;
- a block no running request references stays cached (a later request with the same prefix hits it)
  but counts as free: it is evicted, least recently used first, when an admission needs room;
- ``usage`` is the referenced fraction of the pool, which is what ``vllm:kv_cache_usage_perc`` reports.

Admission (:meth:`KvBlockPool.try_allocate`) fails when the blocks are not there; the engine keeps the
request waiting, FIFO, as vLLM's scheduler does when it cannot allocate.
"""

from __future__ import annotations

import collections
import hashlib
import math
from dataclasses import dataclass


@dataclass
class Allocation:
    """What one admitted request holds: its shared prompt blocks (by key) and its private block count."""

    keys: list[bytes]
    private: int
    hit_tokens: int


def block_keys(tokens: list[str], block_size: int) -> list[bytes]:
    """Hash-chain keys of the full blocks of ``tokens`` (block i's key covers tokens 0..(i+1)*block_size)."""
    digest = hashlib.blake2b(digest_size=16)
    keys = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        digest.update("\x1f".join(tokens[start : start + block_size]).encode())
        keys.append(digest.digest())
    return keys


class KvBlockPool:
    """Ref-counted prompt blocks, private output blocks, LRU eviction of unreferenced cached blocks."""

    def __init__(self, block_size: int, capacity: int) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self._refs: dict[bytes, int] = {}
        """Every resident prompt block and how many running requests reference it."""
        self._free_cached: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        """Resident blocks nobody references, oldest first: the eviction order."""
        self._private = 0

    @property
    def used(self) -> int:
        """Blocks referenced by running requests."""
        return len(self._refs) - len(self._free_cached) + self._private

    @property
    def usage(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0

    def blocks_needed(self, prompt_tokens: int, output_tokens: int) -> int:
        return math.ceil((prompt_tokens + output_tokens) / self.block_size)

    def cached_prefix_tokens(self, tokens: list[str]) -> int:
        """Leading prompt tokens resident in the cache now (what a request admitted now would skip)."""
        hits = 0
        for key in block_keys(tokens, self.block_size):
            if key not in self._refs:
                break
            hits += self.block_size
        return hits

    def try_allocate(self, tokens: list[str], output_tokens: int, keys: list[bytes] | None = None) -> Allocation | None:
        """Reference the request's blocks, evicting free cached ones as needed; None if they do not fit."""
        keys = block_keys(tokens, self.block_size) if keys is None else keys
        hit_blocks = 0
        for key in keys:
            if key not in self._refs:
                break
            hit_blocks += 1
        total = self.blocks_needed(len(tokens), output_tokens)
        if total > self.capacity:
            raise ValueError(f"a request of {total} KV blocks can never fit a pool of {self.capacity}")
        resident = [key for key in keys if key in self._refs]
        pinned_free = sum(1 for key in resident if key in self._free_cached)
        new_blocks = total - len(resident)
        free = self.capacity - len(self._refs) - self._private  # never-used blocks
        if new_blocks > free + len(self._free_cached) - pinned_free:
            return None
        for key in resident:
            self._free_cached.pop(key, None)
            self._refs[key] += 1
        for _ in range(new_blocks - free):
            victim, _ = self._free_cached.popitem(last=False)
            del self._refs[victim]
        for key in keys:
            self._refs.setdefault(key, 1)
        private = total - len(keys)
        self._private += private
        return Allocation(keys=keys, private=private, hit_tokens=hit_blocks * self.block_size)

    def release(self, allocation: Allocation) -> None:
        """Drop the request's references; its prompt blocks stay cached (most recently used last)."""
        self._private -= allocation.private
        for key in reversed(allocation.keys):  # tail blocks become the oldest: evicted first, as in vLLM
            self._refs[key] -= 1
            if self._refs[key] == 0:
                self._free_cached[key] = None
                self._free_cached.move_to_end(key)
