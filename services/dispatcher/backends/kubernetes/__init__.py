"""Kueue-managed batch/v1 Jobs on DAS slices: the ``kubernetes`` job backend.

- :mod:`._errors`: API errors translated at the boundary (``KubernetesApiError``).
- :mod:`._observe`: the pure rules from Job + Workload objects to a :class:`JobState`.
- :mod:`._watch`: the threaded list-and-watch layers.
- :mod:`._backend`: :class:`KubernetesJobBackend`, which ties them together.

The Job manifest itself is built by :mod:`services.dispatcher.backends.manifests`.
"""

from __future__ import annotations

from services.dispatcher.backends.kubernetes._backend import KUEUE_GROUP, KUEUE_VERSION, KubernetesJobBackend
from services.dispatcher.backends.kubernetes._errors import KubernetesApiError
from services.dispatcher.backends.kubernetes._observe import Observation, observe

__all__ = ["KUEUE_GROUP", "KUEUE_VERSION", "KubernetesApiError", "KubernetesJobBackend", "Observation", "observe"]
