"""How often would the grounding test fail on clean runs? Re-predicts recorded rounds with the
current twin and resamples them.

``tests/plan/test_grounding.py`` holds the mean error over a few rounds to 15 %. Whether that is
a fair test or a coin toss depends on how much single rounds spread, which only recorded rounds
can tell. This re-predicts every round directory given (``round-N`` folders written by
``kubescribe loadgen paper ground`` or by the test, under its ``--basetemp``) from its raw records
and the calibration measured beside it, prints each round's errors, and draws rounds with
replacement to estimate, per number of rounds, the share of runs whose mean error of some number
would pass the tolerance (and which numbers cause it).

    python scripts/grounding_stability.py docs/results/paper/ground-s10/*/round-*
"""

from __future__ import annotations

import argparse
import collections
import random
import re
from pathlib import Path

from loadgen.paper_ground import errors_by_number, ground, missed
from services.plan.metrics import bootstrap


def _seed(path: Path) -> int:
    found = re.search(r"(\d+)$", path.name)
    if not found:
        raise SystemExit(f"{path}: not a round-N directory")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="+", type=Path, help="round-N directories with raw records")
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--counts", default="2,3,4,5", help="rounds per simulated test run")
    parser.add_argument("--more", type=int, default=3, help="rounds the test adds when a mean misses (0: none)")
    args = parser.parse_args()
    results = []
    for path in args.rounds:
        result = ground(path, seed=_seed(path), reuse=True)
        results.append(result)
        cells = [
            f"{r['workload']} {r['error']['makespan_s']:+.0%}/{r['error']['jct_mean_s']:+.0%}"
            for r in result["workloads"]
        ]
        print(f"{path}: " + "  ".join(cells))
    errors = errors_by_number(results)
    rounds = len(results)
    print(f"mean error over {rounds} rounds [95 % bootstrap interval]:")
    for (workload, metric), values in errors.items():
        stats = bootstrap(values)
        print(f"  {workload} {metric}: {stats['mean']:+.1%} [{stats['lo']:+.1%}, {stats['hi']:+.1%}]")

    def off(picked: list[int]) -> list[str]:
        return [f"{w} {m}" for w, m in missed(errors, picked)]

    rng = random.Random(0)
    for count in (int(c) for c in args.counts.split(",")):
        culprits: collections.Counter[str] = collections.Counter()
        failed = extended = failed_after = 0
        for _ in range(args.draws):
            picked = [rng.randrange(rounds) for _ in range(count + args.more)]
            misses = off(picked[:count])
            failed += bool(misses)
            culprits.update(misses)
            if misses and args.more:
                extended += 1
                failed_after += bool(off(picked))
        causes = f" ({', '.join(f'{k} {v / args.draws:.1%}' for k, v in culprits.items())})" if culprits else ""
        print(f"{count} rounds: a run fails {failed / args.draws:.1%} of the time{causes}")
        if args.more:
            print(
                f"  with {args.more} more when a mean misses (judged on all {count + args.more}): "
                f"{extended / args.draws:.1%} extended, {failed_after / args.draws:.1%} fail"
            )


if __name__ == "__main__":
    main()
