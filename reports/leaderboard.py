"""JSON leaderboard of cloaks: ranked by the protection they keep against the strongest tracker measured."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from fawkes_eval.results import ResultRow
from reports.cells import DERIVED_KEYS, axis_value, finite, sort_rows
from reports.provenance import datasets

SCHEMA = "fawkes-eval-leaderboard/1"
RANKING = ("worst-case PSR over every measured victim, tracker, countermeasure, leak ratio and seed "
           "(a cloak protects only as well as against its best attacker); ties broken by mean PSR")


def _number(value: Any) -> float | None:
    """JSON has no NaN: a metric that was not measured is null."""
    return float(value) if finite(value) else None


def _cell_entry(row: ResultRow) -> dict[str, Any]:
    m = row.metrics
    return {
        "key": row.key,
        "cell": {k: v for k, v in row.cell.items() if k not in DERIVED_KEYS},
        "psr": _number(m.get("psr")),
        "psr_ci": [_number(m.get("psr_ci_low")), _number(m.get("psr_ci_high"))],
        "top5": _number(m.get("top5")),
        "others_acc": _number(m.get("others_acc")),
        "dssim": _number(m.get("dssim")),
    }


def leaderboard(rows: Sequence[ResultRow]) -> dict[str, Any]:
    """One entry per cloak with its worst and mean PSR, perceptual cost and tracker utility, and every cell."""
    by_cloak: dict[str, list[ResultRow]] = defaultdict(list)
    for row in sort_rows(rows):
        by_cloak[axis_value(row, "cloak")].append(row)
    entries: list[dict[str, Any]] = []
    for cloak, members in by_cloak.items():
        measured = [r for r in members if finite(r.metrics.get("psr"))]
        worst = min(measured, key=lambda r: r.metrics["psr"]) if measured else None
        entries.append({
            "cloak": cloak,
            "worst_psr": _number(worst.metrics["psr"]) if worst else None,
            "worst_psr_ci": [_number(worst.metrics.get("psr_ci_low")), _number(worst.metrics.get("psr_ci_high"))]
            if worst else [None, None],
            "worst_cell": {k: v for k, v in worst.cell.items() if k not in DERIVED_KEYS} if worst else None,
            "mean_psr": _mean([r.metrics["psr"] for r in measured]),
            "mean_dssim": _mean([r.metrics.get("dssim") for r in members]),
            "min_others_acc": _min([r.metrics.get("others_acc") for r in members]),
            "n_cells": len(members),
            "cells": [_cell_entry(r) for r in members],
        })
    entries.sort(key=lambda e: (-(e["worst_psr"] if e["worst_psr"] is not None else -1.0),
                                -(e["mean_psr"] if e["mean_psr"] is not None else -1.0), e["cloak"]))
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    return {"schema": SCHEMA, "ranked_by": RANKING, "measured_on": datasets(rows), "entries": entries}


def _mean(values: Sequence[Any]) -> float | None:
    kept = [float(v) for v in values if finite(v)]
    return float(np.mean(kept)) if kept else None


def _min(values: Sequence[Any]) -> float | None:
    kept = [float(v) for v in values if finite(v)]
    return min(kept) if kept else None


def leaderboard_json(rows: Sequence[ResultRow]) -> str:
    return json.dumps(leaderboard(rows), indent=1, default=str, allow_nan=False)
