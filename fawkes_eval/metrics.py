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


def paired_difference(
    candidate: Sequence[np.ndarray], baseline: Sequence[np.ndarray], seed: int, n_boot: int = 2000,
    level: float = 0.95,
) -> RateCI:
    """Mean over groups of (candidate - baseline), with a percentile CI, for two versions measured on the same cells.

    ``candidate[g][i]`` and ``baseline[g][i]`` are outcomes of the same item (a user's test image) under two cloak
    versions; each replicate resamples groups, then items within a group, and draws the same indices for both
    versions, so the shared variation between users and images cancels. ``value`` < 0 means the candidate's rate is
    lower (e.g. a PSR that dropped).
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"paired outcomes need the same groups: {len(candidate)} vs {len(baseline)}")
    pairs = [(np.asarray(c, dtype=np.float64), np.asarray(b, dtype=np.float64))
             for c, b in zip(candidate, baseline, strict=True)]
    for g, (c, b) in enumerate(pairs):
        if c.shape != b.shape:
            raise ValueError(f"group {g}: paired outcomes need the same items, got {c.shape} vs {b.shape}")
    diffs = [c - b for c, b in pairs if len(c)]
    if not diffs:
        raise ValueError("no outcomes to compare")
    return hierarchical_bootstrap(diffs, seed=seed, n_boot=n_boot, level=level)


def topk_hits(ranked: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): whether the true label is among the first ``k`` ranked predictions."""
    return np.any(ranked[:, :k] == truth[:, None], axis=1)
