"""The by-package CPU split of bench/controlplane_cpu.py: which file belongs to whom, start-up
subtracted, built-ins charged to the package that called them."""

from __future__ import annotations

import cProfile
import json
import sysconfig
import time
from pathlib import Path

from bench.controlplane_cpu import OWN, package_of, shares
from services.common.ids import new_id


def test_files_are_grouped_by_the_package_they_belong_to() -> None:
    repo = Path(__file__).resolve().parents[2]
    stdlib = sysconfig.get_paths()["stdlib"]
    assert package_of(str(repo / "services/summarizer/consumer.py")) == OWN
    assert package_of("/venv/lib/python3.11/site-packages/nats/aio/client.py") == "nats-py"
    assert package_of("/venv/lib/python3.11/site-packages/h11/_connection.py").startswith("httpx")
    assert package_of(f"{stdlib}/asyncio/base_events.py") == "asyncio (the event loop)"
    assert package_of(f"{stdlib}/json/encoder.py").startswith("standard library")
    assert package_of("~") == ""  # a built-in: charged to its callers


def _profile(path: Path, work: int) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(work):
        new_id()  # kubescribe's own code, calling python-ulid and built-ins
        json.dumps({"a": list(range(50))})
    profile.disable()
    profile.dump_stats(str(path))


def test_shares_subtract_the_startup_run_and_add_up_to_one(tmp_path: Path) -> None:
    _profile(tmp_path / "startup.prof", 1)
    _profile(tmp_path / "busy.prof", 3000)
    split = shares(tmp_path / "busy.prof", tmp_path / "startup.prof")
    assert abs(sum(split.values()) - 1.0) < 1e-9
    assert split.get(OWN, 0) > 0  # ids.new_id and the built-ins it calls
    assert split.get("standard library (json, ssl, socket, ...)", 0) > 0  # json.dumps
    assert shares(tmp_path / "busy.prof", tmp_path / "busy.prof") == {}  # nothing beyond start-up
