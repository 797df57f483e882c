"""Job backends, picked by kind: ``local`` (subprocess slots), ``kubernetes`` (Kueue Jobs) and
``fake`` (in memory, scriptable, for tests).

``create(kind, **options)`` is the one way to build one; each kind is imported when first asked
for, so the embedded runtime never imports the Kubernetes client.
"""

from __future__ import annotations

from services.dispatcher.backends._registry import create, known, register
from services.dispatcher.backends.base import JobBackend

__all__ = ["JobBackend", "create", "known", "register"]
