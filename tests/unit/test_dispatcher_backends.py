"""The backend registry: every kind is built by ``create``; ``kubernetes`` is imported only when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.common.errors import ConfigurationError
from services.common.settings import DispatcherSettings, Settings
from services.dispatcher.backends import JobBackend, create, known
from services.dispatcher.backends.local import LocalJobBackend

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
