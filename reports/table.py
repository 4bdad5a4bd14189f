"""Result tables, one per scenario, built from the columns each row's scenario declared (``ResultRow.columns``).

A metric ``m`` with ``m_ci_low`` / ``m_ci_high`` beside it is shown as ``value [low, high]``. Where the campaign
held the clean baseline (the ``none`` cloak), the headline above it is a column of its own, and a cell whose
interval reaches zero is marked as indistinguishable from the clean error (``fawkes_eval.baselines``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fawkes_eval.baselines import above_baseline_keys, indistinguishable_from_clean
from fawkes_eval.results import ResultRow
from reports.cells import axis_value, finite, sort_rows, varying_axes

NO_PROTECTION_MARK = "no protection shown"  # the headline's CI above the clean baseline reaches zero


@dataclass
class Table:
    scenario: str
    headers: list[str]  # axes first, then metrics
    n_axes: int
    lines: list[list[str]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)  # per line: NO_PROTECTION_MARK or ""
    keys: list[str] = field(default_factory=list)  # per line: the cell's key (the HTML row's anchor)
    per_user: list[dict[str, float]] = field(default_factory=list)


def fmt(value: object, spec: str = ".2f") -> str:
    return format(value, spec) if finite(value) else "n/a"


def _with_ci(row: ResultRow, metric: str, spec: str) -> str:
    m = row.metrics
    text = fmt(m.get(metric), spec)
    if f"{metric}_ci_low" in m:
        text += f" [{fmt(m.get(f'{metric}_ci_low'), spec)}, {fmt(m.get(f'{metric}_ci_high'), spec)}]"
    return text


def results_tables(rows: Sequence[ResultRow]) -> list[Table]:
    """One table per scenario, in first-seen order; rows sorted by their axes."""
    by_scenario: dict[str, list[ResultRow]] = {}
    for row in sort_rows(rows):
        by_scenario.setdefault(str(row.cell.get("scenario", "?")), []).append(row)
    tables = []
    for scenario, group in by_scenario.items():
        axes = [a for a in varying_axes(group) if a != "scenario"]
        columns = group[0].columns or [[group[0].headline, group[0].headline, ".2f"]]
        headline = group[0].headline
        above, _, _, _ = above_baseline_keys(headline)
        show_baseline = any(above in r.metrics for r in group)
        headers = [*axes, *(c[1] for c in columns)]
        if show_baseline:
            headers.append(f"{headline} above clean [95% CI]")
        table = Table(scenario, headers, len(axes))
        for r in group:
            line = [axis_value(r, a) for a in axes] + [_with_ci(r, c[0], c[2]) for c in columns]
            if show_baseline:
                line.append(_with_ci(r, above, "+.2f") if above in r.metrics else
                            ("(baseline)" if r.cell.get("cloak") == "none" else "n/a"))
            table.lines.append(line)
            table.marks.append(NO_PROTECTION_MARK if indistinguishable_from_clean(r) else "")
            table.per_user.append(dict(r.per_user))
            table.keys.append(r.key)
        tables.append(table)
    return tables
