"""The backend registry: ``local`` is always there, ``kubernetes`` is imported only when asked for."""

from __future__ import annotations

import pytest

from services.common.errors import ConfigurationError
from services.common.settings import DispatcherSettings, Settings
from services.dispatcher.backends import load_backends
from services.dispatcher.backends.local import LocalJobBackend
from services.dispatcher.domain import JobBackend, create_backend


def test_local_backend_is_registered_and_satisfies_the_protocol() -> None:
    settings = Settings()
    settings.dispatcher = DispatcherSettings(slots=3)  # type: ignore[misc]
    backend = create_backend("local", settings=settings)
    assert isinstance(backend, LocalJobBackend) and isinstance(backend, JobBackend)
    assert backend.slots == 3


def test_zero_slots_means_one_per_core() -> None:
    import os

    assert LocalJobBackend(slots=0).slots == (os.cpu_count() or 1)


def test_unknown_backend_names_the_registered_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"registered backends: .*local"):
        create_backend("slurm")


def test_kubernetes_is_loaded_lazily_on_request() -> None:
    registry = load_backends("kubernetes")
    assert "local" in registry
    try:
        import services.dispatcher.backends.kubernetes  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("the kubernetes backend is not in this tree yet")
    assert "kubernetes" in registry
