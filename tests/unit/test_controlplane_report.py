"""The control-plane bench's arithmetic (bench/controlplane.py): per-recording CPU, the kernel share
and the CPU-bound ceiling that says whether more replicas or fewer milliseconds would help."""

from __future__ import annotations

import os

import pytest

from bench.controlplane import Arm, RunResult, summarize


def _run(wall_s: float, *, ingest: float, nats: float, kernel: float, client: float) -> RunResult:
    return RunResult(
        replicas=1,
        recordings=100,
        wall_s=wall_s,
        cpu_s={"ingest": ingest, "nats-server": nats},
        kernel_cpu_s=kernel,
        harness_cpu_s={"upload client": client},
        nats_msgs={"in": 4000, "out": 5000},
        summary_tokens=8,
    )


def test_ceiling_counts_every_process_on_the_box() -> None:
    runs = [
        _run(2.0, ingest=1.0, nats=1.0, kernel=0.5, client=0.5),
        _run(2.0, ingest=1.2, nats=0.8, kernel=1.0, client=0.5),
    ]
    other_arm = RunResult(
        1, 100, 1.0, {"ingest": 9.0, "nats-server": 9.0}, 1.0, {"upload client": 1.0}, {"in": 1, "out": 1}
    )
    summary = summarize([*runs, other_arm], [Arm(1, 8), Arm(1, 256)], 100, floor_s=2.0)
    assert list(summary) == ["1 replica(s), 8 tokens", "1 replica(s), 256 tokens"]
    assert summary["1 replica(s), 256 tokens"]["rates"] == [100.0]  # a record without the field ran at 256
    row = summary["1 replica(s), 8 tokens"]
    assert row["cpu_ms"] == pytest.approx({"ingest": 11.0, "nats-server": 9.0})
    assert row["harness_cpu_ms"] == pytest.approx({"upload client": 5.0})
    assert row["kernel_share"] == pytest.approx(0.375)
    assert row["cores_busy"] == pytest.approx(1.25)
    cores = os.cpu_count() or 1
    assert row["ceiling_per_s"] == pytest.approx(cores * 1000 / 25.0)
    assert row["ceiling_without_harness_per_s"] == pytest.approx(cores * 1000 / 20.0)
    assert row["fraction_of_floor"] == pytest.approx(0.01)
    assert row["nats_msgs_per_recording"] == {"in": 40.0, "out": 50.0}
    assert row["rate_interval"]["mean"] == pytest.approx(50.0)
