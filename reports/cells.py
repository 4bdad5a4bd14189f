"""Cell identities of result rows: which axes vary, how a cell is labelled, what a countermeasure setting is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fawkes_eval.results import ResultRow

# The order in which cell axes are shown; axes not listed here follow in alphabetical order.
AXIS_ORDER = ("cloak", "surrogates", "victim", "tracker", "scenario", "countermeasure", "leak_ratio", "seed")
ALWAYS_SHOWN = ("cloak", "victim", "tracker")
# Follows from another axis (the dataset's manifest hash from the dataset), so it is never an axis of its own.
DERIVED_KEYS = frozenset({"dataset_sha256"})
NO_COUNTERMEASURE = "none"


def axis_value(row: ResultRow, axis: str) -> str:
    return str(row.cell.get(axis, ""))


def varying_axes(rows: Sequence[ResultRow], always: Iterable[str] = ALWAYS_SHOWN) -> list[str]:
    """The axes worth a column: those always shown, then every other axis taking more than one value."""
    keys = {k for r in rows for k in r.cell} - DERIVED_KEYS
    shown = list(always)
    shown += [k for k in ordered_axes(keys) if k not in shown and len({axis_value(r, k) for r in rows}) > 1]
    return shown


def ordered_axes(keys: Iterable[str]) -> list[str]:
    rank = {axis: i for i, axis in enumerate(AXIS_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def cell_label(row: ResultRow, axes: Sequence[str]) -> str:
    return " / ".join(v for v in (axis_value(row, a) for a in axes) if v)


def sort_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """A stable, readable order: by every axis in display order."""
    rows = list(rows)
    axes = ordered_axes({k for r in rows for k in r.cell} - DERIVED_KEYS)
    return sorted(rows, key=lambda r: tuple(axis_value(r, a) for a in axes))


def countermeasure_setting(spec: str) -> tuple[str, str]:
    """``"jpeg:50"`` -> ``("jpeg", "50")``; ``"none"`` -> ``("none", "")``."""
    family, _, setting = spec.partition(":")
    return family, setting


def setting_order(setting: str) -> tuple[float, str]:
    """Numeric settings in numeric order, anything else after them in text order."""
    try:
        return float(setting), setting
    except ValueError:
        return float("inf"), setting


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")
