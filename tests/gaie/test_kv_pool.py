"""The simulator's KV block pool: shared prefix blocks, private output blocks, LRU eviction of idle cache."""

from __future__ import annotations

from services.runtime.sim.kv import KvBlockPool


def _tokens(word: str, n: int) -> list[str]:
    return [f"{word}{i}" for i in range(n)]


def test_a_shared_prefix_is_held_once_and_hit() -> None:
    pool = KvBlockPool(block_size=4, capacity=10)
    first = pool.try_allocate(_tokens("a", 16), output_tokens=4)  # 4 prompt blocks + 1 output block
    assert first is not None and first.hit_tokens == 0 and pool.used == 5
    second = pool.try_allocate(_tokens("a", 16), output_tokens=4)  # shares the 4 prompt blocks
    assert second is not None and second.hit_tokens == 16 and pool.used == 6
    pool.release(first)
    pool.release(second)
    assert pool.used == 0 and pool.usage == 0  # idle cached blocks count as free, as in vLLM
    assert pool.cached_prefix_tokens(_tokens("a", 16)) == 16


def test_admission_evicts_idle_cache_but_waits_for_running_requests() -> None:
    pool = KvBlockPool(block_size=4, capacity=10)
    held = pool.try_allocate(_tokens("a", 24), output_tokens=4)  # 6 prompt blocks + 1 output block running
    assert held is not None
    assert pool.try_allocate(_tokens("b", 16), output_tokens=4) is None  # 5 more do not fit: wait
    pool.release(held)
    admitted = pool.try_allocate(_tokens("b", 16), output_tokens=4)  # 4 never-used blocks + 1 evicted
    assert admitted is not None and pool.used == 5
    assert pool.cached_prefix_tokens(_tokens("a", 24)) == 20  # the tail block of "a" went first
