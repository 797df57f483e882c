"""Progress of a run, as lifecycle hooks the engines call; the CLIs render them with rich.

The one progress protocol of the project. The engines (the load generator's replay and LLM
sweeps, the demo) never import rich: they call a :class:`Progress` whose default does nothing,
so they run the same in tests, in scripts, under ``kubescribe loadgen`` and ``kubescribe demo``.
It is generic in the result type ``R`` each engine reports, so one protocol serves engines whose
results differ (a replay's ``ItemResult``, the demo's ``DemoResult``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from loadgen.results import RunHeader

R_contra = TypeVar("R_contra", contravariant=True)


class Progress(Protocol[R_contra]):
    """Hooks in the order they are called; an engine calls only those that fit it.

    Implementations must be cheap: they run on the event loop that also keeps the arrival
    schedule or polls the recordings."""

    def on_prepare(self, total: int) -> None:
        """Audio synthesis / prompt loading is about to start for ``total`` items."""

    def on_prepared(self, done: int) -> None:
        """One more item is ready to send."""

    def on_start(self, header: RunHeader) -> None:
        """The clock started; arrivals follow."""

    def on_sent(self, item_id: str, lag_s: float) -> None:
        """An arrival was sent ``lag_s`` after its scheduled time."""

    def on_stage(self, item_id: str, stage: str) -> None:
        """An item moved to a new pipeline stage (``transcribing``, ``summarized``, ...)."""

    def on_result(self, result: R_contra) -> None:
        """An item reached its final outcome."""

    def on_phase(self, description: str) -> None:
        """A new phase (e.g. an LLM concurrency level) began."""

    def on_end(self, stopped: str, duration_s: float) -> None:
        """The run ended: ``completed``, ``deadline`` or ``interrupted``."""


class NullProgress(Progress[R_contra], Generic[R_contra]):
    """Does nothing: the default for library use and tests (the protocol's hooks are no-ops)."""
