"""End to end: replay 20 recordings against the embedded stack (simulator LLM) and check that
the report's numbers are the recordings' own timestamps from the ``recordings`` KV."""

from __future__ import annotations

import json

import pytest

from loadgen.make import make_trace
from loadgen.replay import HttpTarget, NatsTarget, ReplayOptions, replay
from loadgen.report import job_completion_time, stage_segments, write_report
from loadgen.results import read_run, write_run
from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.common.status import StatusStore
from tests.speech import require_tools

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.whisper]


async def test_replay_of_20_items_over_http_matches_the_recordings_kv(embedded_stack, tmp_path):
    require_tools("espeak-ng", "sox")
    items = make_trace(20, pattern="poisson", rate=4.0, seed=8, audio="speech", max_sentences=2, tenants=["acme"])
    nc = await connect(NatsSettings(url=embedded_stack.nats_url), name="loadgen-e2e")
    try:
        js = nc.jetstream()
        target = HttpTarget(embedded_stack.ingest_url)
        try:
            run = await replay(
                items, target, js=js, options=ReplayOptions(name="e2e", deadline_s=240, cache_dir=tmp_path / "audio")
            )
        finally:
            await target.aclose()
        store = await StatusStore.open(js)
        statuses = {r.recording_id: await store.get(r.recording_id) for r in run.items}
    finally:
        await nc.drain()

    failures = [(r.id, r.outcome, r.error) for r in run.items if r.outcome != "summarized"]
    assert not failures, failures
    assert run.footer.stopped == "completed"

    path = write_run(tmp_path / "e2e.jsonl", run)
    written = write_report([read_run(path)], tmp_path / "report")
    summary = json.loads(written["json"].read_text())["runs"][0]

    received = [s.timestamps["received"] for s in statuses.values()]
    summarized = [s.timestamps["summarized"] for s in statuses.values()]
    kv_jct = sorted((s.timestamps["summarized"] - s.timestamps["received"]).total_seconds() for s in statuses.values())
    assert summary["completed"] == 20
    assert summary["makespan_s"] == pytest.approx((max(summarized) - min(received)).total_seconds(), abs=1e-6)
    assert summary["jct_s"]["mean"] == pytest.approx(sum(kv_jct) / 20, abs=1e-6)
    assert summary["jct_s"]["max"] == pytest.approx(kv_jct[-1], abs=1e-6)
    for result in run.items:
        status = statuses[result.recording_id]
        assert result.timestamps == status.timestamps
        assert sum(stage_segments(result).values()) == pytest.approx(job_completion_time(result), abs=1e-6)
        # The load generator saw each completion after the system recorded it.
        assert result.completed_s >= result.accepted_s
    assert summary["ttft_s"]["count"] == 20, "every summary reports its TTFT"
    for name in ("jct_cdf", "timeline", "stages"):
        assert written[name].stat().st_size > 10_000


async def test_direct_nats_replay_through_the_real_pipeline(embedded_stack, tmp_path):
    require_tools("espeak-ng", "sox")
    items = make_trace(4, pattern="burst", seed=9, audio="speech", max_sentences=1)
    nc = await connect(NatsSettings(url=embedded_stack.nats_url), name="loadgen-e2e-direct")
    try:
        js = nc.jetstream()
        run = await replay(
            items, NatsTarget(js), js=js, options=ReplayOptions(deadline_s=180, cache_dir=tmp_path / "audio")
        )
    finally:
        await nc.drain()
    assert [r.outcome for r in run.items] == ["summarized"] * 4, [r.error for r in run.items]
    assert all(job_completion_time(r) > 0 for r in run.items)
