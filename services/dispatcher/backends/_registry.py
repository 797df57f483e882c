"""The backend registry: pick a :class:`~.base.JobBackend` by ``kind`` (``KUBESCRIBE_BACKEND``).

Built-in kinds are registered by import path and imported on first use, so the embedded runtime
never imports the ``kubernetes`` client it does not need (as guidellm's ``Backend.create`` does,
an unknown kind names the registered ones). Other code may :func:`register` more kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.common.errors import ConfigurationError

if TYPE_CHECKING:
    from services.dispatcher.backends.base import JobBackend

Factory = Callable[..., "JobBackend"]

_REGISTRY: dict[str, str | Factory] = {
    "local": "services.dispatcher.backends.local:LocalJobBackend",
    "kubernetes": "services.dispatcher.backends.kubernetes:KubernetesJobBackend",
    "fake": "services.dispatcher.backends.fake:FakeJobBackend",
}
"""kind → factory, or ``"module:attribute"`` of a factory not imported yet."""


def register(kind: str, factory: Factory | str) -> None:
    """Register (or replace) the factory of ``kind``: a callable, or ``"module:attribute"``."""
    _REGISTRY[kind] = factory


def known() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_REGISTRY)


def create(kind: str, **options: object) -> JobBackend:
    """A new backend of ``kind``, built with ``options``; an unknown kind names the registered ones."""
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown job backend {kind!r} (KUBESCRIBE_BACKEND); registered backends: {', '.join(known())}"
        ) from None
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"job backend {kind!r} needs the module {exc.name!r}, which is not installed: reinstall kubescribe"
                " or choose another KUBESCRIBE_BACKEND"
            ) from exc
        _REGISTRY[kind] = factory
    return factory(**options)
