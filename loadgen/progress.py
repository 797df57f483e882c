"""Progress of a run, as lifecycle hooks the engines call; the CLI renders them with rich.

The engines (replay, llm) never import rich: they call a :class:`Progress` whose default does
nothing, so they run the same in tests, in scripts and under ``kubescribe loadgen``.
"""

from __future__ import annotations

from typing import Protocol

from loadgen.results import ItemResult, LlmResult, RunHeader


class Progress(Protocol):
    """Hooks in the order they are called. Implementations must be cheap: they run on the event
    loop that also keeps the arrival schedule."""

    def on_prepare(self, total: int) -> None:
        """Audio synthesis / prompt loading is about to start for ``total`` items."""

    def on_prepared(self, done: int) -> None:
        """One more item is ready to send."""

    def on_start(self, header: RunHeader) -> None:
        """The clock started; arrivals follow."""

    def on_sent(self, item_id: str, lag_s: float) -> None:
        """An arrival was sent ``lag_s`` after its scheduled time."""

    def on_result(self, result: ItemResult | LlmResult) -> None:
        """An item reached its final outcome."""

    def on_phase(self, description: str) -> None:
        """A new phase (e.g. an LLM concurrency level) began."""

    def on_end(self, stopped: str, duration_s: float) -> None:
        """The run ended: ``completed``, ``deadline`` or ``interrupted``."""


class NullProgress(Progress):
    """Does nothing: the default for library use and tests (the protocol's hooks are no-ops)."""
