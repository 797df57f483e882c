"""Job backends, registered by kind: ``local`` (subprocess slots) and ``kubernetes`` (Kueue Jobs).

``local`` is imported eagerly; ``kubernetes`` only when asked for, so that the embedded runtime
never imports the Kubernetes client.
"""

from __future__ import annotations

import importlib

from services.dispatcher.domain import BACKENDS, JobBackend, create_backend

LAZY_BACKENDS = {"kubernetes": "services.dispatcher.backends.kubernetes"}


def load_backends(*kinds: str) -> dict:
    """Import the local backend and any of ``kinds`` that are imported lazily; returns the registry."""
    importlib.import_module("services.dispatcher.backends.local")
    for kind in kinds:
        module = LAZY_BACKENDS.get(kind)
        if module and kind not in BACKENDS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
    return BACKENDS


def get_backend(kind: str, **options: object) -> JobBackend:
    """Create the backend registered as ``kind`` (importing it first when it is lazy)."""
    load_backends(kind)
    return create_backend(kind, **options)


__all__ = ["LAZY_BACKENDS", "get_backend", "load_backends"]
