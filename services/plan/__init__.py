"""``kubescribe plan``: a capacity planner that simulates a GPU cluster (kube-scheduler, Kueue, DAS,
MIG geometries) on a virtual clock and drives the real kubescribe planner through it.

Names load on first use: the ``kubescribe`` CLI registers ``plan`` at every start, and SimPy,
numpy and matplotlib should cost nothing to commands that never plan.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Calibration": "services.plan.calibration",
    "Entry": "services.plan.calibration",
    "CalibrationError": "services.plan.errors",
    "PlanError": "services.plan.errors",
    "SpecError": "services.plan.errors",
    "ClusterSim": "services.plan.sim",
    "Recording": "services.plan.sim",
    "Result": "services.plan.sim",
    "ClusterSpec": "services.plan.spec",
    "load_spec": "services.plan.spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'services.plan' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
