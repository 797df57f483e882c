"""``kubescribe plan``: a capacity planner that simulates a GPU cluster (kube-scheduler, Kueue, DAS,
MIG geometries) on a virtual clock and drives the real kubescribe planner through it."""

from services.plan.calibration import Calibration, Entry
from services.plan.errors import CalibrationError, PlanError, SpecError
from services.plan.sim import ClusterSim, Recording, Result
from services.plan.spec import ClusterSpec, load_spec

__all__ = [
    "Calibration",
    "CalibrationError",
    "ClusterSim",
    "ClusterSpec",
    "Entry",
    "PlanError",
    "Recording",
    "Result",
    "SpecError",
    "load_spec",
]
