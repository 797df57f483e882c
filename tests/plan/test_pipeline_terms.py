"""The grounding's pipeline terms: what the stack adds around the engine, from lone recordings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loadgen.paper_ground import PROBE_GAP_S, _cpu_entries, _simulate, pipeline_entries, probe_trace
from loadgen.results import ItemResult, Run, RunHeader
from services.plan.calibration import Calibration

ENGINE = {"local.spawn_s": 1.5, "local.per_file_s": 0.6, "local.rtf": 0.03}


def _calibration() -> Calibration:
    calibration = Calibration.default()
    for key, value in ENGINE.items():
        calibration = calibration.override(key, value, "test")
    return calibration


def test_terms_are_what_the_twin_does_not_already_wait_for() -> None:
    items = probe_trace()
    assert [i.offset_s for i in items] == [k * PROBE_GAP_S for k in range(len(items))]
    durations = {i.id: 3.0 for i in items}
    twin = {r.id: r for r in _simulate(items, durations, _calibration(), 2).recordings}
    start = datetime(2026, 12, 2, tzinfo=UTC)
    records = []
    for item, lag, io in zip(items, (0.25, 0.35, 0.30), (0.03, 0.05, 0.04), strict=True):
        received = start + timedelta(seconds=item.offset_s)
        running = received + timedelta(seconds=lag)
        wall = 0.7
        records.append(
            ItemResult(
                id=item.id, scheduled_s=item.offset_s, outcome="transcribed", audio_s=3.0,
                timestamps={"received": received, "running": running,
                            "transcribed": running + timedelta(seconds=wall + io)},
                metrics={"transcribe_wall_s": wall},
            )
        )  # fmt: skip
    run = Run(RunHeader(run_id="r", name="probe", mode="replay", target="t", items=len(items)), records)
    entries = pipeline_entries(run, items, durations, _calibration(), 2)
    own_wait = twin[items[0].id].started - twin[items[0].id].arrival
    assert own_wait > 0  # the planner's own wait for a lone recording, which the twin models already
    assert entries["local.dispatch_s"].value == pytest.approx(0.30 - own_wait)
    assert entries["local.per_file_io_s"].value == pytest.approx(0.04)
    assert "median of 3 lone short recordings" in entries["local.dispatch_s"].source


def test_stack_cpu_per_recording_less_its_idle_rate_split_by_side() -> None:
    idle_from = (0.0, {"nats": 1.0, "ingest": 2.0, "summarizer": 3.0, "llm": 0.5})
    busy_from = (3.0, {"nats": 1.03, "ingest": 2.0, "summarizer": 3.0, "llm": 0.5})  # nats idles at 10 ms/s
    busy_to = (13.0, {"nats": 1.33, "ingest": 2.09, "summarizer": 3.3, "llm": 0.8, "notifier-1": 0.2})
    entries = _cpu_entries(idle_from, busy_from, busy_to, 3)
    # nats: 0.30 used - 10 s x 0.01 idle = 0.20; ingest 0.09: arrival 0.29 / 3; summarizer 0.3 + llm 0.3
    assert entries["local.arrival_cpu_s"].value == pytest.approx(0.29 / 3)
    assert entries["local.done_cpu_s"].value == pytest.approx(0.6 / 3)  # a process started meanwhile: skipped
