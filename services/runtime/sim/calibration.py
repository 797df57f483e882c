"""Named simulator calibrations (``calibration.json``): every number carries its source.

``calibration("a100-40gb-qwen2.5-7b", kv_cache_blocks=8000)`` gives a :class:`SimConfig` with the
profile's values and the overrides a sweep applies; :func:`sources` lists where each came from,
so a result file can carry them.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

from services.runtime.sim.engine import SimConfig

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
DEFAULT_PROFILE = "a100-40gb-qwen2.5-7b"


class CalibrationError(ValueError):
    """An unknown profile or a field that SimConfig does not have."""


@cache
def _document() -> dict[str, Any]:
    return json.loads(CALIBRATION_FILE.read_text())


def profiles() -> list[str]:
    return sorted(_document()["profiles"])


def _profile(name: str) -> dict[str, Any]:
    try:
        return _document()["profiles"][name]
    except KeyError:
        raise CalibrationError(f"unknown calibration {name!r}: use one of {', '.join(profiles())}") from None


def calibration(name: str = DEFAULT_PROFILE, **overrides: Any) -> SimConfig:
    """The profile as a SimConfig, with ``overrides`` (sweep values, time_scale, model name) applied."""
    fields = {f.name: f for f in dataclasses.fields(SimConfig)}
    values = {key: entry["value"] for key, entry in _profile(name).items()}
    for key, value in overrides.items():
        if key not in fields:
            raise CalibrationError(f"{key!r} is not a simulator setting: use one of {', '.join(sorted(fields))}")
        values[key] = value
    return SimConfig(**values)


def sources(name: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """Each value of the profile with its source, plus the document's named sources."""
    return {"profile": name, "values": _profile(name), "sources": _document()["_sources"]}
