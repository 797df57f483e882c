"""How much one dispatcher holds: the bound that spreads work across replicas.

A dispatcher keeps each AudioReceived unacked until its recording is transcribed or failed, i.e.
for its whole wait for a GPU. Unbounded, the first replica would pull the whole backlog while a
second idles, and KEDA's ``nats-jetstream`` scaler would see no pending messages to scale on. So
each replica holds at most what it can plan soon (:func:`hold_limit`); a message fetched beyond
that waits in :meth:`Room.reserve`, which stalls the subscriber's fetch loop (FastStream fetches the
next batch only when the handlers return), and the rest of the backlog stays in the stream, where
another replica takes it. The bound on what one replica has unacked at once is therefore
``hold_limit + fetch batch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.msg import Msg

from services.common.settings import DispatcherSettings
from services.dispatcher.backends.base import JobBackend

UNSIZED_HOLD = 1024
"""What a dispatcher holds when its backend has no fixed capacity (Kubernetes: Kueue's queue)."""


def hold_limit(config: DispatcherSettings, backend: JobBackend) -> int:
    """``max_held`` when set, else ``capacity × max_job_recordings × 2``: what runs now plus one
    more round, so packing keeps every slot busy without taking work another replica could start."""
    if config.max_held > 0:
        return config.max_held
    capacity = backend.capacity()
    if capacity is None:
        return UNSIZED_HOLD
    return max(1, capacity * config.max_job_recordings * 2)


class Room:
    """Reserves room under ``limit`` recordings held, as counted by ``held()``.

    A message takes a reservation before it is accepted and gives it back once accepted (or not):
    several waiters woken by one freed slot must not all see room and all be held.
    """

    def __init__(self, limit: int, held: Callable[[], int]) -> None:
        self.limit = limit
        self.peak = 0
        """The most recordings held at once (a test and a metric check the bound)."""
        self._held = held
        self._reserved = 0
        self._waiting: dict[int, Msg] = {}
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def waiting(self) -> list[Msg]:
        """Messages fetched but not yet held: the keepalive covers them, so none is redelivered
        to another replica while it waits here."""
        return list(self._waiting.values())

    def _full(self) -> bool:
        return self._held() + self._reserved >= self.limit

    async def reserve(self, msg: Msg) -> bool:
        """Wait for room and reserve it (``True``), or ``False`` once closed; pair with :meth:`release`."""
        if self._full() and not self._closed:
            self._waiting[id(msg)] = msg
            try:
                while self._full() and not self._closed:
                    self._changed.clear()
                    await self._changed.wait()
            finally:
                self._waiting.pop(id(msg), None)
        if self._closed:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """The reserved message was accepted (now counted by ``held()``) or settled at once."""
        self._reserved -= 1
        self._changed.set()

    def taken(self) -> None:
        self.peak = max(self.peak, self._held())

    def freed(self) -> None:
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()
