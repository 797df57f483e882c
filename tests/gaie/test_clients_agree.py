"""GuideLLM 0.8.1 (the paper's client) and ``kubescribe loadgen llm`` agree on TTFT through the same gateway."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadgen.gaie_clients import AGREEMENT, compare_clients
from loadgen.gaie_guidellm import TOOLS

pytestmark = pytest.mark.slow


def test_guidellm_and_loadgen_agree_on_ttft_p50_and_p99() -> None:
    if not (TOOLS / "bin" / "guidellm").exists():
        pytest.skip("GuideLLM's venv is missing: run `make guidellm`")
    result = compare_clients(replace(AGREEMENT, rounds=1))
    for metric in ("p50", "p99"):
        ours, theirs = result["rounds"][0]["loadgen"][metric], result["rounds"][0]["guidellm"][metric]
        assert ours == pytest.approx(theirs, rel=0.10), (metric, result["rounds"][0])
