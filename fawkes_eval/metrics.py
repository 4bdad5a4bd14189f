"""Identification accuracy and the bootstrap confidence intervals every reported rate carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RateCI:
    """A rate with its bootstrap 95% interval, and how many units it was measured on."""

    value: float
    low: float
    high: float
    n_groups: int
    n_items: int

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def hierarchical_bootstrap(
    outcomes: Sequence[np.ndarray], seed: int, n_boot: int = 2000, level: float = 0.95
) -> RateCI:
    """Mean over groups of each group's mean outcome, with a percentile CI.

    Each bootstrap replicate resamples groups (protected users) with replacement, then each chosen group's
    items (test images) with replacement, as DESIGN.md section 2 prescribes.
    """
    groups = [np.asarray(o, dtype=np.float64) for o in outcomes if len(o)]
    if not groups:
        raise ValueError("no outcomes to bootstrap")
    point = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(groups), size=len(groups))
        reps[b] = np.mean([groups[c][rng.integers(0, len(groups[c]), size=len(groups[c]))].mean() for c in chosen])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return RateCI(point, float(min(low, point)), float(max(high, point)), len(groups), sum(len(g) for g in groups))


def topk_hits(ranked: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): whether the true label is among the first ``k`` ranked predictions."""
    return np.any(ranked[:, :k] == truth[:, None], axis=1)
