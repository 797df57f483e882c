"""Errors of the capacity planner, each printed by the CLI as one readable line.

KubescribeError
└── PlanError            the plan cannot run as asked
    ├── SpecError            a cluster spec that does not validate
    └── CalibrationError     a calibration file or sweep that cannot be used
"""

from __future__ import annotations

from services.common.errors import KubescribeError


class PlanError(KubescribeError):
    """Root of the planner's errors."""


class SpecError(PlanError):
    """A cluster spec file that is not valid."""


class CalibrationError(PlanError):
    """A calibration entry without a source, an unknown key, or a malformed sweep."""
