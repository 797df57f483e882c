"""Arrival processes and presets: deterministic in the seed, shaped like the paper's experiments."""

from __future__ import annotations

import itertools
import statistics

import pytest

from loadgen.errors import LoadgenError
from loadgen.make import arrival_offsets, make_trace, preset


def test_poisson_is_seeded_and_has_the_requested_rate():
    offsets = arrival_offsets("poisson", 4000, rate=20.0, seed=7)
    assert offsets == arrival_offsets("poisson", 4000, rate=20.0, seed=7)
    assert offsets != arrival_offsets("poisson", 4000, rate=20.0, seed=8)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert offsets[0] == 0 and all(g >= 0 for g in gaps)
    assert statistics.mean(gaps) == pytest.approx(1 / 20.0, rel=0.05)
    # Exponential gaps: standard deviation equals the mean.
    assert statistics.pstdev(gaps) == pytest.approx(1 / 20.0, rel=0.08)


def test_constant_and_burst():
    assert arrival_offsets("constant", 4, rate=2.0) == [0.0, 0.5, 1.0, 1.5]
    assert arrival_offsets("burst", 3) == [0.0, 0.0, 0.0]
    assert arrival_offsets("burst", 5, burst_size=2, burst_interval_s=3) == [0.0, 0.0, 3.0, 3.0, 6.0]


@pytest.mark.parametrize(("pattern", "rate"), [("poisson", 0.0), ("constant", -1.0), ("weird", 1.0)])
def test_bad_arrival_parameters(pattern, rate):
    with pytest.raises(LoadgenError):
        arrival_offsets(pattern, 3, rate=rate)  # type: ignore[arg-type]


def test_kueue_preset_is_a_burst_of_32_half_medium_half_large():
    items = preset("kueue", seed=1)
    assert len(items) == 32
    assert {i.offset_s for i in items} == {0.0}
    models = [i.model for i in items]
    assert models.count("medium") == 16 and models.count("large-v3") == 16
    assert len({i.audio for i in items}) > 8, "recordings should vary in length"
    local = preset("kueue", seed=1, models=["tiny.en", "tiny.en"])
    assert {i.model for i in local} == {"tiny.en"}


def test_das_and_llm_presets():
    das = preset("das", seed=2)
    assert len(das) == 24 and len({i.model for i in das}) == 4
    assert das[-1].offset_s > 0
    prompts = preset("llm", count=10, seed=2)
    assert all(p.prompt and p.audio is None for p in prompts)
    assert len({len(p.prompt) for p in prompts}) > 3, "prompt lengths should vary"
    with pytest.raises(LoadgenError, match="unknown preset"):
        preset("nope")


def test_generic_trace_round_robins_models_and_tenants():
    items = make_trace(6, pattern="constant", rate=1, audio="tone", models=["a", "b"], tenants=["x", "y", "z"])
    assert [i.model for i in items] == ["a", "b"] * 3
    assert [i.tenant for i in items] == ["x", "y", "z"] * 2
    assert len({i.id for i in items}) == 6
