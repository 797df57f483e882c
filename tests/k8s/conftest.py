"""kmock's KubernetesEmulator as the API server, talked to by the official ``kubernetes`` client.

The emulator is an in-memory API server over real HTTP on 127.0.0.1; it runs no controllers, so
tests play Kueue and the Job controller themselves by patching Job and Workload status.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from kubernetes import client as k8s

from services.common.events import ObjectRef, Priority
from services.common.settings import KubernetesSettings
from services.dispatcher.backends.kubernetes import KUEUE_GROUP, KUEUE_VERSION, KubernetesJobBackend
from services.dispatcher.domain import JobEvent, JobRecording, JobState, TranscriptionJob

JOBS = "batch/v1/jobs"
WORKLOADS = f"{KUEUE_GROUP}/{KUEUE_VERSION}/workloads"


@pytest.fixture
def namespace() -> str:
    """A namespace per test, so tests never see each other's objects."""
    return f"ks-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def k8s_settings(namespace: str) -> KubernetesSettings:
    return KubernetesSettings().model_copy(
        update={"namespace": namespace, "kueue_queue": "team-a", "watch_timeout_s": 2}
    )


@pytest.fixture
def emulator(kmock):
    """The emulator with the resources kubescribe uses declared (a real server lists them even when empty)."""
    kmock.resources[JOBS] = {"kind": "Job", "namespaced": True, "verbs": ["list", "watch", "create", "delete"]}
    kmock.resources[WORKLOADS] = {"kind": "Workload", "namespaced": True, "verbs": ["list", "watch"]}
    return kmock


@pytest.fixture
def api_client(emulator) -> Any:
    configuration = k8s.Configuration()
    configuration.host = str(emulator.url).rstrip("/")
    api = k8s.ApiClient(configuration)
    yield api
    api.close()


@pytest_asyncio.fixture(loop_scope="session")
async def make_backend(api_client, k8s_settings) -> AsyncIterator[Callable[..., KubernetesJobBackend]]:
    """Backends sharing the emulator; each is closed at the end (a restart is just a second one)."""
    backends: list[KubernetesJobBackend] = []

    def factory(**options: Any) -> KubernetesJobBackend:
        backend = KubernetesJobBackend(
            options.pop("settings", k8s_settings),
            api_client=api_client,
            extra_labels={"kubescribe.dev/created-by": "tests"},
            **options,
        )
        backends.append(backend)
        return backend

    yield factory
    for backend in backends:
        await backend.aclose()


def make_job(**overrides: Any) -> TranscriptionJob:
    """A job builder whose defaults each test overrides (like Kueue's testingjobs wrappers)."""
    recordings = overrides.pop("recordings", None) or [
        JobRecording(
            recording_id=f"rec-{uuid.uuid4().hex[:8]}",
            audio=ObjectRef(bucket="audio", name=f"{uuid.uuid4().hex}.wav"),
            duration_s=12.5,
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
    ]
    fields: dict[str, Any] = {
        "model": "tiny.en",
        "profile": "mig-1g.5gb",
        "recordings": recordings,
        "priority": Priority.normal,
    }
    fields.update(overrides)
    return TranscriptionJob(**fields)


class EventReader:
    """Reads a backend's watch stream with a deadline, so a missing event fails instead of hanging."""

    def __init__(self, backend: KubernetesJobBackend) -> None:
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        # A task drains the stream: cancelling a pending ``anext`` would close the generator.
        self._task = asyncio.create_task(self._drain(backend.watch()))
        self.seen: list[JobEvent] = []

    async def _drain(self, stream: AsyncIterator[JobEvent]) -> None:
        async for event in stream:
            self._queue.put_nowait(event)

    async def next(self, timeout: float = 10.0) -> JobEvent:
        event = await asyncio.wait_for(self._queue.get(), timeout)
        self.seen.append(event)
        return event

    async def until(self, job_id: str, state: JobState, timeout: float = 10.0) -> list[JobEvent]:
        """Events of ``job_id`` up to and including ``state``."""
        events: list[JobEvent] = []
        while True:
            event = await self.next(timeout)
            if event.job_id != job_id:
                continue
            events.append(event)
            if event.state is state:
                return events

    async def quiet(self, seconds: float = 0.5) -> list[JobEvent]:
        """Whatever arrives within ``seconds`` (normally nothing)."""
        extra: list[JobEvent] = []
        try:
            while True:
                extra.append(await self.next(seconds))
        except TimeoutError:
            return extra
