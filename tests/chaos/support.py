"""What the chaos tests share: short real clips, paced uploads with retry, kill targets and the
exactly-once checks (one SummaryReady, one transcript object, no orphaned idempotency claim).

Used by :mod:`tests.chaos.test_chaos` (one of each process) and :mod:`tests.scale` (a 3-node
NATS cluster and replicas of every service), so "exactly once" means the same thing in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError, ServiceUnavailableError

from services.common.events import SummaryReady
from services.common.status import RecordingStage
from services.common.topology import (
    IDEMPOTENCY_BUCKET,
    STATUS_BUCKET,
    SUMMARIES_STREAM,
    SUMMARY_READY,
    TRANSCRIPTS_BUCKET,
)
from services.ingest.client import upload_with_retry
from services.ingest.idempotency import REVERSE_PREFIX
from services.runtime.processes import ProcessFailedError, descendants, wait_until_async
from services.runtime.stack import EmbeddedStack
from tests.kv import kv_keys
from tests.speech import synthesize

CLIP_TEXTS = ("Budget review on Thursday.", "Send the design today.", "Hire two engineers.", "Water the plants.")
"""About a second of speech each: whisper's time is not what these tests measure."""


def make_clips(directory: Path) -> list[Path]:
    """Four short real speech clips, reused round-robin (synthesis is the slow part)."""
    return [synthesize(text, directory / f"clip{i}.wav") for i, text in enumerate(CLIP_TEXTS)]


@dataclass
class Replay:
    """Uploads paced over time, each retried with its own Idempotency-Key until accepted."""

    stack: EmbeddedStack
    clips: list[Path]
    count: int
    spacing_s: float
    ids: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    concurrency: int = 0
    """At most this many uploads under way at once (0: no bound); a slow ingest queues the rest."""

    async def run(self) -> None:
        """Upload ``i`` goes to ingest replica ``i % replicas``, as a round-robin Service would send it."""
        urls = self.stack.ingest_urls
        limit = asyncio.Semaphore(self.concurrency or self.count or 1)
        clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
        try:

            async def one(i: int) -> None:
                await asyncio.sleep(i * self.spacing_s)
                async with limit:
                    try:
                        body = await upload_with_retry(
                            clients[i % len(clients)],
                            self.clips[i % len(self.clips)],
                            idempotency_key=f"chaos-{i}",
                            deadline_s=150,
                        )
                        self.ids[i] = body["id"]
                    except Exception as exc:  # the test fails on it below, with the reason
                        self.errors.append(f"upload {i}: {type(exc).__name__}: {exc}")

            await asyncio.gather(*(one(i) for i in range(self.count)))
        finally:
            for client in clients:
                await client.aclose()


class Completions:
    """SummaryReady arrivals as seen live (core subscription): for the time to the next completion."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def on_summary(self, msg) -> None:
        self.times.append(time.monotonic())

    def first_after(self, t: float) -> float | None:
        return next((x for x in self.times if x > t), None)


def victim(stack: EmbeddedStack, target: str) -> int | None:
    """The pid to kill: a supervised child, or a running transcriber below a dispatcher."""
    if target != "transcriber":
        process = stack.process(target)
        return process.pid if process and process.running else None
    for name in stack.names("dispatcher"):
        dispatcher = stack.process(name)
        for pid in sorted(descendants(dispatcher.pid) if dispatcher and dispatcher.pid else ()):
            with contextlib.suppress(psutil.Error):
                if "services.transcriber" in " ".join(psutil.Process(pid).cmdline()):
                    return pid
    return None


async def ready_again(stack: EmbeddedStack, target: str, pid: int) -> None:
    """The killed process is replaced and passes its health check (a transcriber: a new one runs)."""
    process = stack.process(stack.names("dispatcher")[0] if target == "transcriber" else target)
    assert process is not None

    def ready() -> bool:
        if target == "transcriber":
            return victim(stack, target) not in (None, pid)
        return process.running and process.pid != pid and bool(process.spec.ready is None or process.spec.ready())

    await wait_until_async(lambda: asyncio.to_thread(ready), f"{target} to be back", 90, interval=0.1)


def log_tails(stack: EmbeddedStack) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(stack.log_dir.glob("*.log")))


def assert_no_traceback(stack: EmbeddedStack) -> None:
    """Riding through a crash of a neighbour is normal operation: one line, never a traceback."""
    noisy = {p.name: p.read_text() for p in stack.log_dir.glob("*.log") if "Traceback" in p.read_text()}
    assert not noisy, "\n".join(f"--- {n}\n{t[max(0, t.index('Traceback') - 500) :][:3000]}" for n, t in noisy.items())


async def events_per_recording(js, stream: str, subject: str) -> dict[str, int]:
    """How many ``subject`` events each recording has in ``stream``, read message by message.

    By sequence (STREAM.MSG.GET), not through a consumer: on a 3-node cluster a fresh ephemeral
    consumer answered its first fetch with 503 while it elected a leader (a full run failed so).
    A request that meets a leader election is retried; a purged sequence is skipped.
    """
    info = await js.stream_info(stream)
    counts: dict[str, int] = {}
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        try:
            msg = await _through_elections(lambda seq=seq: js.get_msg(stream, seq))
        except NotFoundError:
            continue
        if msg.subject == subject:
            rid = SummaryReady.model_validate_json(msg.data).recording_id
            counts[rid] = counts.get(rid, 0) + 1
    return counts


async def _through_elections(call, attempts: int = 20, delay_s: float = 0.25):
    """``await call()``, tried again while NATS times out or JetStream elects a leader."""
    for attempt in range(attempts):
        try:
            return await call()
        except (TimeoutError, ServiceUnavailableError, NoRespondersError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay_s)
    raise AssertionError("unreachable")


async def stage_of(kv, rid: str) -> str | None:
    with contextlib.suppress(Exception):
        return json.loads((await kv.get(rid)).value)["stage"]
    return None


async def wait_all_summarized(nc, ids: list[str], timeout: float) -> dict[str, str | None]:
    kv = await nc.jetstream().key_value(STATUS_BUCKET)
    stages: dict[str, str | None] = {}

    async def done() -> bool:
        for rid in ids:
            if stages.get(rid) != RecordingStage.summarized.value:
                stages[rid] = await stage_of(kv, rid)
        return all(s == RecordingStage.summarized.value for s in stages.values())

    with contextlib.suppress(ProcessFailedError):  # the assertion names what is missing
        await wait_until_async(done, "every recording summarized", timeout, interval=1.0)
    return stages


async def assert_exactly_once(nc, ids: list[str]) -> None:
    js = nc.jetstream()
    summaries = await events_per_recording(js, SUMMARIES_STREAM, SUMMARY_READY)
    wrong = {rid: summaries.get(rid, 0) for rid in ids if summaries.get(rid, 0) != 1}
    assert not wrong, f"SummaryReady count is not exactly one for {wrong}"
    transcripts = await js.object_store(TRANSCRIPTS_BUCKET)
    names = [info.name for info in await transcripts.list()]
    assert sorted(names) == sorted(ids), "one transcript object per recording, none for anything else"
    claims = await js.key_value(IDEMPOTENCY_BUCKET)
    status = await js.key_value(STATUS_BUCKET)
    orphaned = []
    keys = await kv_keys(js, IDEMPOTENCY_BUCKET)
    assert keys, "every upload carried an Idempotency-Key, so its claim must be listed"
    for key in keys:
        if key.startswith(REVERSE_PREFIX):  # rec.<id>: the pointer from a recording to its claim
            owner = key.removeprefix(REVERSE_PREFIX)
        else:
            owner = json.loads((await claims.get(key)).value)["id"]
        if await stage_of(status, owner) is None:
            orphaned.append(owner)
    assert not orphaned, f"idempotency keys still claimed by uploads that never finished: {orphaned}"
