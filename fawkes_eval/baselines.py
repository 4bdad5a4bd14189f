"""The clean baseline beside every cell (DESIGN.md section 2, "Clean baseline").

A campaign whose grid holds the ``none`` cloak measures each victim/tracker/countermeasure's clean error on the
same users and queries as every cloak (same seed, same split). Every other cell then also reports its headline
rate above that baseline: the paired difference over the same users and query photos, with a hierarchical
paired bootstrap CI. A cell whose interval reaches zero is indistinguishable from the clean error: no
protection shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fawkes_eval.metrics import paired_difference
from fawkes_eval.results import ResultRow

BASELINE_CLOAK = "none"
# what differs between a cell and its baseline: the cloak and what only a cloak has
_CLOAK_AXES = ("cloak", "cloak_options", "surrogates")


def _identity(row: ResultRow) -> str:
    return json.dumps({k: v for k, v in row.cell.items() if k not in _CLOAK_AXES}, sort_keys=True, default=str)


def above_baseline_keys(headline: str) -> tuple[str, str, str, str]:
    """Metric names: the difference, its CI, and the baseline's own rate."""
    return (f"{headline}_above_baseline", f"{headline}_above_baseline_ci_low", f"{headline}_above_baseline_ci_high",
            f"baseline_{headline}")


def paired_outcomes(a: ResultRow, b: ResultRow) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Per-user outcome arrays of two rows measured on the same users and queries, or None if they were not."""
    users = sorted(a.outcomes)
    if not users or users != sorted(b.outcomes):
        return None
    if any(len(a.outcomes[u]) != len(b.outcomes[u]) for u in users):
        return None
    return ([np.asarray(a.outcomes[u], float) for u in users], [np.asarray(b.outcomes[u], float) for u in users])


def with_baselines(rows: Sequence[ResultRow]) -> list[tuple[ResultRow, ResultRow | None]]:
    """Each row beside its ``none`` counterpart (same cell but for the cloak), or None; a baseline row is its own."""
    baselines = {_identity(r): r for r in rows if r.cell.get("cloak") == BASELINE_CLOAK}
    return [(row, baselines.get(_identity(row))) for row in rows]


def attach_baselines(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """``rows`` with, on every cell that has a ``none`` counterpart, the headline above that baseline."""
    out = []
    for row, base in with_baselines(rows):
        pairs = None if base is None or base is row else paired_outcomes(row, base)
        if pairs is None or base is None:
            out.append(row)
            continue
        diff = paired_difference(pairs[0], pairs[1], seed=int(row.cell.get("seed", 0)),
                                 n_boot=int(row.cell.get("n_boot", 2000)))
        value, low, high, baseline = above_baseline_keys(row.headline)
        metrics = {**row.metrics, value: diff.value, low: diff.low, high: diff.high,
                   baseline: base.metrics.get(row.headline, float("nan"))}
        out.append(replace(row, metrics=metrics))
    return out


def indistinguishable_from_clean(row: ResultRow) -> bool | None:
    """True when the cell's rate above the baseline has a CI reaching 0; None without a baseline."""
    low = row.metrics.get(above_baseline_keys(row.headline)[1])
    if low is None or low != low:
        return None
    return low <= 0.0
