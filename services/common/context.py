"""FastStream's context injection, resolved on the event loop instead of in a worker thread.

fast_depends runs a custom field's ``use`` through ``anyio.to_thread.run_sync`` when ``use`` is
not a coroutine function, and FastStream's ``Context.use`` is a plain method: so every message
paid one thread hand-off (a queue put, a condition notify, a wake-up) per injected parameter,
``message: NatsMessage`` included, just to look a name up in a dict. py-spy put that at ~10 % of
the summarizer's CPU in ``bench/controlplane.py``. The lookup never blocks, so it runs inline here.
"""

from __future__ import annotations

from typing import Annotated, Any

from faststream._internal.context import Context as _ThreadedContext
from faststream.nats.message import NatsMessage as _NatsMessage


class Context(_ThreadedContext):
    """``faststream.Context`` with a coroutine ``use``: same arguments, same resolution."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:
        return super().use(**kwargs)


NatsMessage = Annotated[_NatsMessage, Context("message")]
"""``faststream.nats.annotations.NatsMessage``, resolved inline."""
