"""Replays on an embedded stack, for the paper command's local experiments.

Each round of experiments gets its own stack (its own NATS, ingest, dispatcher and transcribers) so
nothing carries over between rounds; the clock starts only once the stack's start-up work (warm
transcribers loading the model) has died down, so every run starts on an equally quiet machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from loadgen.errors import LoadgenError
from loadgen.results import Run, write_run
from loadgen.trace import TraceItem
from services.common.progress import NullProgress, Progress

if TYPE_CHECKING:
    from services.runtime.stack import EmbeddedStack


class PaperError(LoadgenError):
    """A paper experiment run that did not complete (printed as one line, exit 1)."""


def settle(limit_s: float = 45.0, idle: float = 0.7) -> float:
    """Wait until the machine is at least ``idle`` idle (or ``limit_s`` passed); returns the idle share."""
    deadline = time.monotonic() + limit_s
    time.sleep(2.0)
    measured = 1.0 - psutil.cpu_percent(interval=1.0) / 100.0
    while measured < idle and time.monotonic() < deadline:
        measured = 1.0 - psutil.cpu_percent(interval=1.0) / 100.0
    return measured


def _quiet(name: str, line: str) -> None:
    """Children's logs stay in their files under the stack's data directory."""


@contextlib.asynccontextmanager
async def embedded_stack(name: str, *, env: dict[str, str], workdir: Path) -> AsyncIterator[EmbeddedStack]:
    """A started embedded stack (its own NATS, ingest, dispatcher, transcribers), stopped on exit."""
    from services.runtime.stack import EmbeddedStack

    data_dir = workdir / name
    for attempt in (1, 2):  # a free port picked for a child can be taken before it binds: retry once
        stack = EmbeddedStack(
            data_dir, llm="sim", nats_port=0, llm_port=0, ingest_port=0, sink=_quiet, env=env, log_level="WARNING"
        )
        try:
            await asyncio.to_thread(stack.start)
            break
        except Exception as exc:
            if attempt == 2:
                raise PaperError(f"{name}: the embedded stack did not start: {exc}".splitlines()[0]) from None
            shutil.rmtree(data_dir, ignore_errors=True)
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)
    shutil.rmtree(data_dir, ignore_errors=True)


async def replay_on(
    stack: EmbeddedStack,
    items: Sequence[TraceItem],
    trace_path: Path,
    *,
    name: str,
    env: dict[str, str],
    results: Path,
    deadline_s: float = 300.0,
    settle_limit_s: float = 45.0,
    progress: Progress | None = None,
) -> Run:
    """Replay ``items`` on a running ``stack`` once the machine has settled; writes and returns the Run.

    A stack can take several replays in turn (each waits for the last one's work to finish, as
    ``until="transcribed"`` does): the grounding rounds do, which spares a stack's start-up per
    workload.
    """
    from loadgen.replay import HttpTarget, ReplayOptions, replay
    from services.common.nats_client import connect
    from services.common.settings import NatsSettings

    await asyncio.to_thread(settle, settle_limit_s)
    nc = await connect(NatsSettings(url=stack.nats_url), name="kubescribe-paper")
    target = HttpTarget(stack.ingest_url)
    try:
        options = ReplayOptions(name=name, deadline_s=deadline_s, until="transcribed", trace=str(trace_path))
        options.extra["env"] = env
        run = await replay(items, target, js=nc.jetstream(), options=options, progress=progress or NullProgress())
    finally:
        await target.aclose()
        with contextlib.suppress(Exception):
            await nc.drain()
    write_run(results / f"{name}.jsonl", run)
    bad = [r for r in run.items if r.outcome in ("failed", "rejected", "timeout")]
    if bad:
        logs = results / f"{name}-logs"
        shutil.copytree(stack.log_dir, logs, dirs_exist_ok=True)
        first = bad[0]
        raise PaperError(
            f"{name}: {len(bad)}/{len(run.items)} recordings did not complete "
            f"({first.id} {first.outcome}: {first.error or 'no terminal state'}; logs in {logs})"
        )
    return run
