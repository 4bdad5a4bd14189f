"""The regression gate: pair the cells of a baseline and a candidate, measure each difference with a CI, and
decide whether protection dropped or distortion rose beyond stated tolerances.

Cells are paired by their identity minus the compared axes ("by"): comparing cloak versions pairs
``fawkes-v1.0-early:mid`` with ``fawkes-v1.0:mid`` on the same victim, tracker, countermeasure and seed. A compared
axis keeps its ``:mode`` suffix when both sides use the same set of modes, so low pairs with low, not with mid.
Within a pair, the same users and query photos (same seed, same split) are paired too: the headline difference
is the mean over users of the per-query difference, with a hierarchical paired bootstrap CI (users, then their
queries, the same draws on both sides), as DESIGN.md section 2 prescribes for regression verdicts. Only where the
two cells were not measured on the same users and queries does the CI fall back to combining the two cells' own
intervals (MOVER), which errs wide; the verdict table says which was used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fawkes_eval.baselines import paired_outcomes
from fawkes_eval.metrics import RateCI, paired_difference
from fawkes_eval.results import ResultRow
from reports.cells import ALWAYS_SHOWN, DERIVED_KEYS, axis_value, finite, ordered_axes, sort_rows
from reports.markdown import md_text

PROTECTION_DROP = "protection drop"
DISTORTION_RISE = "distortion rise"


@dataclass(frozen=True)
class Tolerances:
    """How much worse a candidate may be before the gate fails.

    max_psr_drop: largest allowed fall of a cell's PSR (absolute, 0..1).
    max_dssim_rise: largest allowed rise of a cell's mean DSSIM on the aligned crop (absolute).
    require_significance: a PSR drop beyond tolerance fails only when its 95% CI also excludes zero, so sampling
        noise on a few test photos does not fail the gate; False decides on the point estimate alone.
    """

    max_psr_drop: float = 0.05
    max_dssim_rise: float = 0.001
    require_significance: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_psr_drop <= 1.0:
            raise ValueError(f"max_psr_drop must be in [0, 1], got {self.max_psr_drop}")
        if self.max_dssim_rise < 0.0:
            raise ValueError(f"max_dssim_rise must be >= 0, got {self.max_dssim_rise}")


def difference_ci(baseline: tuple[float, float, float], candidate: tuple[float, float, float]) -> tuple[float, float, float]:
    """CI of candidate - baseline from each side's own (point, low, high) interval, by recovering the variance
    from the interval limits (MOVER; Zou and Donner, 2008). It treats the two sides as independent, so for
    cells measured on the same users and photos it errs wide, never narrow."""
    b, b_low, b_high = baseline
    c, c_low, c_high = candidate
    diff = c - b
    low = diff - math.sqrt((c - c_low) ** 2 + (b_high - b) ** 2)
    high = diff + math.sqrt((c_high - c) ** 2 + (b - b_low) ** 2)
    return diff, low, high


def paired_bootstrap(baseline: Sequence[float], candidate: Sequence[float], seed: int = 0, n_boot: int = 2000,
                     level: float = 0.95) -> RateCI:
    """Mean of candidate - baseline over pairs, with a percentile CI from resampling the pairs together."""
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if b.shape != c.shape or b.ndim != 1 or not len(b):
        raise ValueError(f"need two equally long, non-empty sequences of paired values, got {b.shape} and {c.shape}")
    diffs = c - b
    picks = np.random.default_rng(seed).integers(0, len(diffs), size=(n_boot, len(diffs)))
    reps = diffs[picks].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    point = float(diffs.mean())
    return RateCI(point, float(min(low, point)), float(max(high, point)), len(diffs), len(diffs))


@dataclass(frozen=True)
class CellComparison:
    identity: dict[str, str]  # the cell axes both sides share
    baseline: ResultRow
    candidate: ResultRow
    psr: tuple[float, float, float]  # candidate - baseline of the headline: difference, CI low, CI high
    dssim_rise: float  # candidate - baseline, NaN where either side lacks it
    failures: tuple[str, ...]  # PROTECTION_DROP and/or DISTORTION_RISE
    notes: tuple[str, ...]  # e.g. parameters that changed under the same cloak name
    paired: bool = False  # the CI pairs the same users and queries (else MOVER over the two cells' intervals)


@dataclass(frozen=True)
class Comparison:
    by: tuple[str, ...]
    tolerances: Tolerances
    cells: list[CellComparison]
    only_baseline: list[ResultRow] = field(default_factory=list)
    only_candidate: list[ResultRow] = field(default_factory=list)
    overall_psr: RateCI | None = None  # mean PSR difference over paired cells, paired bootstrap over cells

    @property
    def failed(self) -> bool:
        return any(c.failures for c in self.cells)


def compared_axes(baseline: Sequence[ResultRow], candidate: Sequence[ResultRow]) -> tuple[str, ...]:
    """The axes in which the two sides share no value at all: what is being compared (e.g. the cloak version)."""
    keys = ({k for r in baseline for k in r.cell} | {k for r in candidate for k in r.cell}) - DERIVED_KEYS
    return tuple(sorted(k for k in keys
                        if not {axis_value(r, k) for r in baseline} & {axis_value(r, k) for r in candidate}))


def _mode(value: str) -> str:
    return value.partition(":")[2]


def _identities(rows: Sequence[ResultRow], by: Sequence[str], keep_mode: set[str], side: str) -> dict[str, ResultRow]:
    out: dict[str, ResultRow] = {}
    for row in rows:
        identity = {k: str(v) for k, v in row.cell.items() if k not in DERIVED_KEYS and k not in by}
        identity.update({k: f"*:{_mode(axis_value(row, k))}" for k in keep_mode})  # e.g. cloak=*:mid
        key = json.dumps(identity, sort_keys=True)
        if key in out:
            raise ValueError(f"{side}: two cells pair as the same cell {identity}; compare by more axes or filter one")
        out[key] = row
    return out


def compare_rows(baseline: Sequence[ResultRow], candidate: Sequence[ResultRow], tolerances: Tolerances,
                 by: Sequence[str] | None = None, seed: int = 0, n_boot: int = 2000) -> Comparison:
    """Pair cells and judge each difference. ``by`` defaults to :func:`compared_axes`."""
    axes = tuple(compared_axes(baseline, candidate) if by is None else by)
    known = {k for r in (*baseline, *candidate) for k in r.cell}
    if unknown := sorted(set(axes) - known):
        raise ValueError(f"no cell axis named {', '.join(unknown)}; the axes are: {', '.join(ordered_axes(known))}")
    keep_mode = {k for k in axes
                 if {_mode(axis_value(r, k)) for r in baseline} == {_mode(axis_value(r, k)) for r in candidate}}
    base = _identities(baseline, axes, keep_mode, "baseline")
    cand = _identities(candidate, axes, keep_mode, "candidate")
    shared = sorted(base.keys() & cand.keys(), key=lambda k: tuple(axis_value(base[k], a) for a in ordered_axes(base[k].cell)))
    cells = [_judge(json.loads(key), base[key], cand[key], tolerances, seed, n_boot) for key in shared]
    measured = [c for c in cells if finite(c.psr[0])]
    overall = paired_bootstrap([_headline(c.baseline) for c in measured],
                               [_headline(c.candidate) for c in measured], seed, n_boot) if measured else None
    return Comparison(
        axes, tolerances, cells,
        only_baseline=sort_rows(base[k] for k in base.keys() - cand.keys()),
        only_candidate=sort_rows(cand[k] for k in cand.keys() - base.keys()),
        overall_psr=overall,
    )


def _headline(row: ResultRow) -> float:
    return row.metrics.get(row.headline, math.nan)


def _interval(row: ResultRow) -> tuple[float, float, float]:
    m, h = row.metrics, row.headline
    return m.get(h, math.nan), m.get(f"{h}_ci_low", math.nan), m.get(f"{h}_ci_high", math.nan)


def _cloak_params(row: ResultRow) -> str:
    """The resolved cloak configuration, as the runner records it in the provenance."""
    return json.dumps(row.provenance.get("cloak_params", {}), sort_keys=True, default=str)


def _judge(identity: dict[str, str], baseline: ResultRow, candidate: ResultRow, tol: Tolerances, seed: int,
           n_boot: int) -> CellComparison:
    pairs = paired_outcomes(candidate, baseline) if candidate.headline == baseline.headline else None
    if pairs is not None:
        diff = paired_difference(pairs[0], pairs[1], seed=seed, n_boot=n_boot)
        psr = (diff.value, diff.low, diff.high)
    else:
        psr = difference_ci(_interval(baseline), _interval(candidate))
    dssim_rise = candidate.metrics.get("dssim", math.nan) - baseline.metrics.get("dssim", math.nan)
    failures = []
    drop, _, high = psr
    if finite(drop) and -drop > tol.max_psr_drop and (not tol.require_significance or high < 0.0):
        failures.append(PROTECTION_DROP)
    if finite(dssim_rise) and dssim_rise > tol.max_dssim_rise:
        failures.append(DISTORTION_RISE)
    notes = []
    if axis_value(baseline, "cloak") == axis_value(candidate, "cloak") and _cloak_params(baseline) != _cloak_params(candidate):
        notes.append("same cloak name, different parameters")
    if not (finite(psr[0]) and finite(dssim_rise)):
        notes.append("not measured on one side")
    if pairs is None and finite(psr[0]):
        notes.append("not the same users and queries: CI from the two cells' intervals")
    return CellComparison(identity, baseline, candidate, psr, dssim_rise, tuple(failures), tuple(notes), pairs is not None)


def _fmt(value: float, spec: str = "+.2f") -> str:
    return format(value, spec) if finite(value) else "n/a"


def _short(value: object) -> str:
    """Hashes and other long values, cut for a one-line summary."""
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "..."


def comparison_markdown(comparison: Comparison) -> str:
    """The verdict table: one line per paired cell, then the unpaired cells and the overall difference."""
    tol = comparison.tolerances
    by = ", ".join(comparison.by) or "nothing (the same cells on both sides)"
    identities = [c.identity for c in comparison.cells]
    keys = ordered_axes({k for i in identities for k in i})
    columns = [k for k in keys if len({i.get(k, "") for i in identities}) > 1] or \
        [k for k in ALWAYS_SHOWN if k in keys and k not in comparison.by]
    common = [f"{k}={_short(identities[0].get(k, ''))}" for k in keys if k not in columns] if identities else []
    sides = ["baseline", "candidate"] if comparison.by else []
    header = [*columns, *sides, "PSR base -> cand", "PSR diff [95% CI]", "DSSIM diff", "verdict"]
    lines = [
        f"Paired by every cell axis except: {md_text(by)}. Tolerances: PSR drop <= {tol.max_psr_drop:g}"
        f"{' (and the drop must be significant: 95% CI below 0)' if tol.require_significance else ''}, "
        f"DSSIM rise <= {tol.max_dssim_rise:g}. Differences are candidate - baseline; a PSR difference's CI is a "
        "paired bootstrap over the same users and query photos (where a pair was not measured on the same ones, "
        "it combines both cells' CIs, MOVER, and says so); DSSIM is compared as measured (rows carry no spread).",
        "",
        f"Common to every pair: {md_text(', '.join(common) or 'nothing')}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for c in comparison.cells:
        values = [c.identity.get(k, "") for k in columns]
        values += [" / ".join(axis_value(r, k) for k in comparison.by) for r in (c.baseline, c.candidate)] if sides else []
        verdict = ", ".join(c.failures).upper() or "ok"
        if c.notes:
            verdict += f" ({'; '.join(c.notes)})"
        psr_b, psr_c = (_fmt(r.metrics.get("psr", math.nan), ".2f") for r in (c.baseline, c.candidate))
        lines.append(
            "| " + " | ".join(md_text(v) for v in values) + f" | {psr_b} -> {psr_c} "
            f"| {_fmt(c.psr[0])} [{_fmt(c.psr[1])}, {_fmt(c.psr[2])}] | {_fmt(c.dssim_rise, '+.4f')} | {md_text(verdict)} |"
        )
    for side, rows in (("baseline", comparison.only_baseline), ("candidate", comparison.only_candidate)):
        if rows:
            lines.append(f"\nOnly in the {side} (not compared): " + "; ".join(
                md_text(" / ".join(f"{k}={_short(v)}" for k, v in r.cell.items() if k not in DERIVED_KEYS)) for r in rows))
    if comparison.overall_psr is not None:
        o = comparison.overall_psr
        lines.append(f"\nMean PSR difference over {o.n_groups} paired cell(s): {o.value:+.3f} "
                     f"[{o.low:+.3f}, {o.high:+.3f}] (paired bootstrap over cells).")
    failed = [c for c in comparison.cells if c.failures]
    lines.append(f"\nVerdict: {'FAIL' if failed else 'PASS'}: {len(failed)} of {len(comparison.cells)} paired cell(s) "
                 "beyond tolerance.")
    return "\n".join(lines) + "\n"


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The verdicts as JSON-ready data (NaN as null), for CI systems that read rather than grep."""

    def num(value: float) -> float | None:
        return float(value) if finite(value) else None

    o = comparison.overall_psr
    return {
        "by": list(comparison.by),
        "tolerances": {"max_psr_drop": comparison.tolerances.max_psr_drop,
                       "max_dssim_rise": comparison.tolerances.max_dssim_rise,
                       "require_significance": comparison.tolerances.require_significance},
        "failed": comparison.failed,
        "overall_psr_difference": None if o is None else {"value": o.value, "ci": [o.low, o.high], "pairs": o.n_groups},
        "cells": [
            {"identity": c.identity, "baseline_key": c.baseline.key, "candidate_key": c.candidate.key,
             "baseline": {k: c.baseline.cell.get(k) for k in comparison.by},
             "candidate": {k: c.candidate.cell.get(k) for k in comparison.by},
             "psr_difference": num(c.psr[0]), "psr_difference_ci": [num(c.psr[1]), num(c.psr[2])],
             "paired": c.paired,
             "dssim_rise": num(c.dssim_rise), "failures": list(c.failures), "notes": list(c.notes)}
            for c in comparison.cells
        ],
        "only_baseline": [r.key for r in comparison.only_baseline],
        "only_candidate": [r.key for r in comparison.only_candidate],
    }
