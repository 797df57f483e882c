"""Listing a KV bucket's live keys in tests, without nats-py's ``KeyValue.keys()``.

``keys()`` runs a watcher and ends it when the first consumer info says nothing is pending; on
a busy machine, and right after a JetStream leader change, it now and then reported "no keys"
for a bucket holding hundreds (a chaos test's exactly-once check failed on it with every
recording summarized). The stream itself knows its subjects: ``STREAM.INFO`` with a subject
filter lists every key that has a message, and a read of each tells a live key from a deleted
or purged one.
"""

from __future__ import annotations

import asyncio

from nats.errors import Error as NatsError
from nats.js.errors import KeyDeletedError, KeyNotFoundError


async def kv_keys(js, bucket: str, attempts: int = 5) -> set[str]:
    """The live keys of ``bucket`` (empty when it holds none); NATS timeouts are tried again."""
    prefix = f"$KV.{bucket}."
    for attempt in range(attempts):
        try:
            info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
            kv = await js.key_value(bucket)
            live = set()
            for subject in info.state.subjects or {}:
                key = subject.removeprefix(prefix)
                try:
                    await kv.get(key)
                except (KeyNotFoundError, KeyDeletedError):
                    continue  # its last message is a delete or purge marker
                live.add(key)
            return live
        except (NatsError, TimeoutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
