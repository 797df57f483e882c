"""The old local GAIE analogue stays runnable under ``kubescribe loadgen paper gaie-local`` until the
gateway experiment replaces it: two real simulator replicas, both routings, every request served."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadgen.paper_gaie import gaie_local

pytestmark = pytest.mark.slow


def test_gaie_local_runs_both_routings_over_real_replicas(tmp_path: Path) -> None:
    result = gaie_local(tmp_path, rounds=1, seed=1, levels=(5, 10), requests=10, max_tokens=16)
    assert result["sim"]["max_num_seqs"] == 5
    [round_] = result["rounds"]
    for routing in ("random", "least-loaded"):
        assert round_[routing]["10"]["p99"] >= round_[routing]["10"]["p50"] > 0
    assert sorted(p.name for p in tmp_path.glob("round-1-*.jsonl")) == [
        "round-1-least-loaded.jsonl",
        "round-1-random.jsonl",
    ]
