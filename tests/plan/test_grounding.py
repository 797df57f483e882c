"""The simulator predicts real local replays: calibrated only from the real transcriber's service
times measured here, it must land within 15 % of the makespan and mean JCT that the embedded
stack (real NATS, ingest, dispatcher, faster-whisper) shows for the same traces.

One round is one replay of each of the four workloads. Single rounds spread (a mean JCT of 1.5 s
moves by ±20 % from round to round on this machine), so the test holds the mean error over
``KUBESCRIBE_GROUNDING_ROUNDS`` rounds (3 by default), as ``kubescribe loadgen paper ground``
reports it. When a mean misses after those, ``KUBESCRIBE_GROUNDING_MORE`` more rounds (3) are
run and the mean over all of them decides: evidence added to, never a fresh try judged alone, so
a twin that is off by more than 15 % still fails. Resampling 15 recorded rounds
(``scripts/grounding_stability.py``) put a clean run's chance of failing at 11.5 % with 3 rounds
alone and 1.6 % with this rule, which extends about one run in nine. About 2.8 minutes per
round on 2 cores: the suite's slowest test, marked slow so ``make test-quick`` leaves it out.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest

from loadgen.paper_ground import WORKLOADS, errors_by_number, ground, missed

ROUNDS = int(os.environ.get("KUBESCRIBE_GROUNDING_ROUNDS", "3"))
MORE = int(os.environ.get("KUBESCRIBE_GROUNDING_MORE", "3"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.whisper,
    pytest.mark.timeout(300 * (ROUNDS + MORE) + 300),
]


def test_local_simulation_predicts_real_replays_within_15_percent(tmp_path: Path) -> None:
    def run(first: int, count: int) -> list[dict]:
        seeds = range(first + 1, first + count + 1)
        return [ground(tmp_path / f"round-{seed}", seed=seed, workloads=WORKLOADS) for seed in seeds]

    rounds = run(0, ROUNDS)
    if missed(errors_by_number(rounds)):
        rounds += run(ROUNDS, MORE)
    assert all({w["workload"] for w in r["workloads"]} == {w.name for w in WORKLOADS} for r in rounds)
    errors = errors_by_number(rounds)
    report = "; ".join(
        f"{w} {m}: {statistics.fmean(e):+.0%} {[f'{x:+.0%}' for x in e]}" for (w, m), e in errors.items()
    )
    off = missed(errors)
    assert not off, f"{', '.join(f'{w} {m}' for w, m in off)} off on average over {len(rounds)} rounds ({report})"
