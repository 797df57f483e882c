"""The simulator predicts real local replays: calibrated only from the real transcriber's service
times measured here, it must land within 15 % of the makespan and mean JCT that the embedded
stack (real NATS, ingest, dispatcher, faster-whisper) shows for the same traces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadgen.paper_ground import TOLERANCE, WORKLOADS, ground

pytestmark = [
    pytest.mark.slow,
    pytest.mark.whisper,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not os.environ.get("KUBESCRIBE_RUN_GROUNDING"),
        reason="9-17 min on 2 cores (four real replays): KUBESCRIBE_RUN_GROUNDING=1 runs it",
    ),
    pytest.mark.xfail(
        strict=False,
        reason="known open: within 15 % on bursts of short recordings, not yet on long or Poisson traces "
        "(docs/results/paper/summary.md has the measured errors)",
    ),
]


def test_local_simulation_predicts_real_replays_within_15_percent(tmp_path: Path) -> None:
    result = ground(tmp_path, seed=1, workloads=WORKLOADS)
    report = "; ".join(
        f"{w['workload']}: makespan {w['measured']['makespan_s']:.1f} real vs {w['predicted']['makespan_s']:.1f} "
        f"sim, mean JCT {w['measured']['jct_mean_s']:.1f} vs {w['predicted']['jct_mean_s']:.1f}"
        for w in result["workloads"]
    )
    assert {w["workload"] for w in result["workloads"]} == {w.name for w in WORKLOADS}
    for row in result["workloads"]:
        for metric, error in row["error"].items():
            assert abs(error) <= TOLERANCE, f"{row['workload']} {metric} off by {error:+.0%} ({report})"
