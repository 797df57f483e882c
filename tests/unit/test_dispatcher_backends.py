"""The backend registry: every kind is built by ``create``; ``kubernetes`` is imported only when asked for."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.common.errors import ConfigurationError
from services.common.events import ObjectRef
from services.common.settings import DispatcherSettings, Settings
from services.dispatcher.backends import JobBackend, create, known
from services.dispatcher.backends.fake import FakeCluster, FakeJobBackend, FakeRun
from services.dispatcher.backends.local import LocalJobBackend
from services.dispatcher.domain import JobRecording, JobState, TranscriptionJob

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_local_backend_is_registered_and_satisfies_the_protocol() -> None:
    settings = Settings()
    settings.dispatcher = DispatcherSettings(slots=3)  # type: ignore[misc]
    backend = create("local", settings=settings)
    assert isinstance(backend, LocalJobBackend) and isinstance(backend, JobBackend)
    assert backend.slots == 3


def test_zero_slots_means_one_per_core() -> None:
    assert LocalJobBackend(slots=0).slots == (os.cpu_count() or 1)


def test_unknown_backend_names_the_registered_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"registered backends: fake, kubernetes, local"):
        create("slurm")
    assert {"local", "kubernetes", "fake"} <= set(known())


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (this one has imported the kubernetes client long ago)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_kubernetes_is_loaded_lazily_on_request() -> None:
    out = _run(
        """
        import sys
        from services.dispatcher import app, backends
        backend = backends.create("local", slots=1)
        print("before", "kubernetes" in sys.modules, type(backend).__name__)
        from kubernetes import client
        backend = backends.create("kubernetes", api_client=client.ApiClient())
        print("after", "services.dispatcher.backends.kubernetes" in sys.modules, type(backend).__name__)
        """
    )
    assert out.splitlines() == ["before False LocalJobBackend", "after True KubernetesJobBackend"]


async def _states(backend: JobBackend, count: int) -> list[tuple[str, str, str | None]]:
    stream = backend.watch()
    return [(e.job_id, e.state.value, e.reason) for e in [await anext(stream) for _ in range(count)]]


def _job(priority: str = "normal") -> TranscriptionJob:
    recording = JobRecording(recording_id="r", audio=ObjectRef(bucket="audio", name="x"))
    return TranscriptionJob(model="tiny.en", profile="cpu", recordings=[recording], priority=priority)


async def test_fake_backend_admits_by_priority_and_ends_runs_as_scripted() -> None:
    release = asyncio.Event()

    async def handler(run: FakeRun) -> None:
        await run.start()
        await release.wait()
        if run.job.priority.value == "low":
            raise RuntimeError("segfault")
        if run.job.priority.value == "high":
            await run.preempt()

    backend = FakeJobBackend(handler, slots=1)
    first, low, high = _job(), _job("low"), _job("high")
    for job in (first, low, high, low):  # the second submit of ``low`` is a retry: ignored
        await backend.submit(job)
    assert backend.free_slots() == 0 and await backend.active() == sorted([first.job_id, low.job_id, high.job_id])
    release.set()
    events = await _states(backend, 12)
    await backend.aclose()
    assert backend.cluster.admitted == [first.job_id, high.job_id, low.job_id]
    assert [e for e in events if e[0] == first.job_id] == [
        (first.job_id, s, None) for s in ("queued", "admitted", "running", "succeeded")
    ]
    assert [e[1:] for e in events if e[0] == high.job_id][-1] == (
        "evicted",
        "Preempted: InClusterQueue: by a higher priority workload",
    )
    assert [e[1:] for e in events if e[0] == low.job_id][-1] == ("failed", "RuntimeError: segfault")


async def test_fake_cluster_outlives_its_backend_and_a_new_one_hears_live_jobs() -> None:
    release = asyncio.Event()

    async def hold(run: FakeRun) -> None:
        await run.start()
        await release.wait()

    cluster = FakeCluster(hold, slots=None)
    first = FakeJobBackend(cluster=cluster)
    job = _job()
    await first.submit(job)
    await first.aclose()
    second = FakeJobBackend(cluster=cluster)  # the restarted dispatcher's
    assert await second.active() == [job.job_id]
    release.set()
    # Like a listing, the new backend first hears where the live job is now, then what follows.
    assert [s for _, s, _ in await _states(second, 3)] == ["admitted", "running", "succeeded"]
    await second.aclose()
    await cluster.aclose()


async def test_fake_backend_without_a_runner_says_how_to_get_one() -> None:
    backend = FakeJobBackend()  # the default handler transcribes, which needs a runner
    await backend.submit(_job())
    events = await _states(backend, 4)
    await backend.aclose()
    assert events[-1][1] == "failed" and "runner=transcriber_runner(js, engine)" in (events[-1][2] or "")


async def test_the_stream_tells_which_later_states_of_a_job_are_already_queued() -> None:
    """What lets the dispatcher write an admission and the start that follows it as one status revision."""
    release = asyncio.Event()

    async def handler(run: FakeRun) -> None:
        await run.start()
        await release.wait()

    backend = FakeJobBackend(handler, slots=1)
    job = _job()
    await backend.submit(job)
    stream = backend.watch()
    seen = []
    for _ in range(3):  # queued, admitted, running: all emitted before the first is read
        await asyncio.sleep(0.05)
        event = await anext(stream)
        seen.append((event.state.value, backend.waiting(job.job_id, JobState.running), backend.superseded(job.job_id)))
    assert seen == [("queued", True, True), ("admitted", True, True), ("running", False, False)]
    assert not backend.waiting(job.job_id, JobState.succeeded)
    release.set()
    assert (await anext(stream)).state is JobState.succeeded
    assert not backend.waiting(job.job_id, JobState.succeeded) and not backend._waiting  # nothing left counted
    assert not backend.superseded(job.job_id)
    await backend.aclose()
