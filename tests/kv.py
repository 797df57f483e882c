"""Listing a KV bucket's keys in tests, without nats-py's false "no keys"."""

from __future__ import annotations

import asyncio

from nats.errors import Error as NatsError
from nats.js.errors import NoKeysError


async def kv_keys(js, bucket: str, attempts: int = 5) -> set[str]:
    """The live keys of a KV bucket (empty set when it holds none).

    Only "no keys" means empty: a listing that timed out on a busy machine is tried again, never
    taken for an empty bucket (that made a before/after comparison fail at random)."""
    kv = await js.key_value(bucket)
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(0.5 * attempt)  # a KV stream that just changed leader settles first
        try:
            return set(await kv.keys())
        except NoKeysError:
            # nats-py now and then reports no keys for a bucket that has some: believe it only
            # when the bucket's stream is empty too, or after the last attempt.
            if attempt == attempts - 1 or (await js.stream_info(f"KV_{bucket}")).state.messages == 0:
                return set()
        except (NatsError, TimeoutError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
