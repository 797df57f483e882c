"""GuideLLM 0.8.1 (the paper's client) and ``kubescribe loadgen llm`` agree on TTFT through the same gateway.

Same configuration for both: one simulator replica behind Envoy, a TTFT the model dominates
(0.5 s, no prefix dependence, in real time), concurrency 5 below ``max_num_seqs``. Each client
runs on a fresh gateway; p50 and p99 must agree within 10 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from loadgen.gaie import GaieOptions, run_arm
from loadgen.gaie_guidellm import TOOLS

pytestmark = pytest.mark.slow


def _percentiles(records: list[dict]) -> tuple[float, float]:
    ttft = [r["ttft_s"] for r in records if r["phase"] == "measure" and not r["error"]]
    assert len(ttft) >= 30
    return float(np.percentile(ttft, 50)), float(np.percentile(ttft, 99))


def test_guidellm_and_loadgen_agree_on_ttft() -> None:
    if not (TOOLS / "bin" / "guidellm").exists():
        pytest.skip("GuideLLM's venv is missing: run `make guidellm`")
    options = dict(
        arms=("random",), rounds=1, concurrencies=(5,), requests=40, warmup_requests=10, max_tokens=16,
        replicas=1, time_scale=1.0, overrides={"ttft": 0.5, "ttft_per_token": 0.0},
    )  # fmt: skip
    ours = _percentiles(run_arm(GaieOptions(client="loadgen", **options), "random", 0))
    theirs = _percentiles(run_arm(GaieOptions(client="guidellm", **options), "random", 0))
    assert ours[0] == pytest.approx(theirs[0], rel=0.10), (ours, theirs)
    assert ours[1] == pytest.approx(theirs[1], rel=0.10), (ours, theirs)
