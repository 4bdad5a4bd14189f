"""The regression gate's power at a campaign's scale: which per-cell PSR drops ``fawkes-eval compare`` flags.

A cell is flagged when its PSR falls by more than the tolerance and the paired bootstrap CI of the fall excludes
zero (``reports.compare``). With U protected users x Q clean queries per user, this tries every way k of the U x Q
queries can flip from protected to recognised (nothing flipping back) and counts the placements the gate flags.

    python benchmarks/gate_power.py --users 2 --queries 3     # the shipped regression example's cells
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from fawkes_eval.metrics import paired_difference
from reports.compare import Tolerances


def flagged(users: int, queries: int, flips: tuple[int, ...], tolerance: float, n_boot: int) -> bool:
    base = [np.ones(queries) for _ in range(users)]
    cand = [np.ones(queries) for _ in range(users)]
    for f in flips:
        cand[f // queries][f % queries] = 0.0
    diff = paired_difference(cand, base, seed=0, n_boot=n_boot)
    return -diff.value > tolerance and diff.high < 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--queries", type=int, default=3, help="clean test queries per user")
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    tolerance = Tolerances().max_psr_drop
    n = args.users * args.queries
    print(f"{args.users} users x {args.queries} queries, tolerance {tolerance:g}, {args.n_boot} resamples")
    print("| queries flipped | PSR drop | placements flagged |\n|---|---|---|")
    for k in range(1, n + 1):
        placements = list(itertools.combinations(range(n), k))
        hits = sum(flagged(args.users, args.queries, p, tolerance, args.n_boot) for p in placements)
        print(f"| {k} of {n} | {k / n:.2f} | {hits} of {len(placements)} |")


if __name__ == "__main__":
    main()
