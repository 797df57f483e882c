"""Handlers' injected dependencies resolve on the event loop, never through a worker thread."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import get_type_hints

import pytest
from fast_depends.library import CustomField
from fast_depends.utils import is_coroutine_callable, run_async

from services.common.context import Context
from services.dispatcher.handlers import on_audio_received
from services.notifier.handlers import on_outcome
from services.summarizer.handlers import on_transcript_ready


@pytest.mark.parametrize("handler", [on_audio_received, on_transcript_ready, on_outcome], ids=lambda h: h.__name__)
def test_every_injected_field_resolves_inline(handler) -> None:
    """fast_depends sends a field whose ``use`` is not a coroutine function to a worker thread, per
    message; faststream's own ``Context`` and ``NatsMessage`` are such fields (the thread hand-offs cost
    ~10 % of the summarizer's CPU), so the handlers use ``services.common.context``'s."""
    fields = [p.default for p in inspect.signature(handler).parameters.values() if isinstance(p.default, CustomField)]
    for hint in get_type_hints(handler, include_extras=True).values():
        fields += [meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, CustomField)]
    assert len(fields) >= 2, f"{handler.__name__} injects less than its message and service: nothing guarded"
    for field in fields:
        assert is_coroutine_callable(field.use), f"{handler.__name__}: {field!r} resolves in a worker thread"


def test_context_resolves_the_same_value_on_the_loop_thread() -> None:
    from faststream._internal.context import ContextRepo

    repo = ContextRepo()
    repo.set_global("thing", object())
    field = Context("thing")
    field.param_name = "thing"
    seen: list[int] = []
    original = Context.__mro__[1].use

    def spy(self, /, **kwargs):
        seen.append(threading.get_ident())
        return original(self, **kwargs)

    Context.__mro__[1].use = spy
    try:
        resolved = asyncio.run(run_async(field.use, context__=repo))
    finally:
        Context.__mro__[1].use = original
    assert resolved["thing"] is repo.get("thing")
    assert seen == [threading.get_ident()]
