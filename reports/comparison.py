"""One page comparing several campaigns, as RobustBench's leaderboard compares defences: cloaks as rows, threat models
as columns, each cell the headline rate with its 95% CI and whether it is above the clean baseline, linked to the
cell's row in its own campaign's report.

A threat model is a cell's scenario with the victim, tracker, countermeasure (and side), leak ratio and dataset
where those vary over all the campaigns (``reports.verdict.threat_label``); a cloak is its grid entry with its
surrogates. Where two campaigns (or seeds) measured the same cloak under the same threat model, the cell lists
each, named by campaign. Self-contained: no script, no network, every name escaped (Jinja2 autoescape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fawkes_eval.baselines import BASELINE_CLOAK, above_baseline_keys
from fawkes_eval.results import ResultRow
from reports.cells import finite, sort_rows
from reports.html import jinja_environment
from reports.plots import headline_name
from reports.provenance import environment_summary
from reports.verdict import cloak_label, threat_axes, threat_label, threat_order

ABOVE, NOT_ABOVE, NO_BASELINE = "above clean", "no protection shown", "no baseline"


@dataclass(frozen=True)
class CampaignResults:
    """One campaign's rows, its name on the page and the link to its own report (relative to the page)."""

    name: str
    rows: Sequence[ResultRow]
    report: str
    origin: str = ""


@dataclass
class Entry:
    """One measurement in a comparison cell."""

    campaign: str
    link: str
    value: str
    marker: str
    number: float = float("nan")  # the headline, for ranking


@dataclass
class Line:
    cloak: str
    is_baseline: bool
    cells: list[list[Entry]] = field(default_factory=list)  # one list per column
    mean: float = float("nan")


def _fmt(value: Any) -> str:
    return format(value, ".2f") if finite(value) else "n/a"


def _entry(row: ResultRow, campaign: CampaignResults, seed_varies: bool) -> Entry:
    m, h = row.metrics, row.headline
    value = _fmt(m.get(h))
    if f"{h}_ci_low" in m:
        value += f" [{_fmt(m.get(f'{h}_ci_low'))}, {_fmt(m.get(f'{h}_ci_high'))}]"
    low = m.get(above_baseline_keys(h)[1])
    marker = "" if row.cell.get("cloak") == BASELINE_CLOAK else (
        NO_BASELINE if low is None or not finite(low) else ABOVE if low > 0.0 else NOT_ABOVE)
    name = campaign.name + (f", seed {row.cell.get('seed')}" if seed_varies else "")
    number = float(m[h]) if finite(m.get(h)) else float("nan")
    return Entry(name, f"{campaign.report}#cell-{row.key}", value, marker, number)


def comparison_table(campaigns: Sequence[CampaignResults]) -> tuple[list[str], list[str], list[Line]]:
    """(column headers, the headline each column reports, lines): cloaks ranked by their mean headline over the
    columns they were measured in, the clean baseline last."""
    everything = [r for c in campaigns for r in c.rows]
    axes = [a for a in threat_axes(everything) if a != "seed"]
    seed_varies = len({str(r.cell.get("seed")) for r in everything}) > 1
    columns: dict[str, str] = {}
    for row in sorted(sort_rows(everything), key=threat_order):
        columns.setdefault(threat_label(row, axes), headline_name([row]))
    names = list(columns)
    lines: dict[str, Line] = {}
    for campaign in campaigns:
        for row in sort_rows(campaign.rows):
            label = cloak_label(row)
            line = lines.setdefault(label, Line(label, row.cell.get("cloak") == BASELINE_CLOAK,
                                                [[] for _ in names]))
            line.cells[names.index(threat_label(row, axes))].append(_entry(row, campaign, seed_varies))
    for line in lines.values():
        values = [e.number for cell in line.cells for e in cell if finite(e.number)]
        line.mean = sum(values) / len(values) if values else float("nan")
    ranked = sorted(lines.values(), key=lambda ln: (ln.is_baseline, -(ln.mean if finite(ln.mean) else -1.0),
                                                    ln.cloak))
    return names, list(columns.values()), ranked


def comparison_html(title: str, campaigns: Sequence[CampaignResults]) -> str:
    """The comparison page (see the module docstring)."""
    headers, headlines, lines = comparison_table(campaigns)
    everything = [r for c in campaigns for r in c.rows]
    return jinja_environment().get_template("comparison.html.j2").render(
        title=title, headers=headers, headlines=headlines, lines=lines, campaigns=campaigns,
        environment=environment_summary(everything), ABOVE=ABOVE, NOT_ABOVE=NOT_ABOVE, NO_BASELINE=NO_BASELINE,
    )
