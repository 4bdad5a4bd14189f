"""Report plots as PNG data URIs (matplotlib, Agg): CI bars, a cloak x victim heatmap, PSR vs DSSIM, PSR vs
countermeasure setting. Each is a pure function of result rows and returns None where it has nothing to show."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from fawkes_eval.results import ResultRow
from reports.cells import (
    NO_COUNTERMEASURE,
    axis_value,
    cell_label,
    countermeasure_setting,
    finite,
    setting_order,
    sort_rows,
    varying_axes,
)

# Labels come from user-named components; "$" must not switch matplotlib into mathtext (it would fail or mangle).
STYLE: dict[Any, Any] = {"text.parse_math": False, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}


@dataclass(frozen=True)
class Plot:
    title: str
    caption: str
    data_uri: str


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)  # a Figure built without pyplot needs a canvas to draw on
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _errors(rows: Sequence[ResultRow]) -> np.ndarray:
    """(2, N) distances from each PSR to its CI bounds, for matplotlib's asymmetric error bars."""
    psr = np.array([r.metrics["psr"] for r in rows])
    low = np.array([r.metrics.get("psr_ci_low", np.nan) for r in rows])
    high = np.array([r.metrics.get("psr_ci_high", np.nan) for r in rows])
    return np.nan_to_num(np.stack([psr - low, high - psr]).clip(min=0.0))


def _measured(rows: Sequence[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if finite(r.metrics.get("psr"))]


def ci_bars(rows: Sequence[ResultRow]) -> Plot | None:
    """Every cell's PSR with its bootstrap 95% CI, one bar per cell."""
    rows = sort_rows(_measured(rows))
    if not rows:
        return None
    axes = varying_axes(rows)
    labels = [cell_label(r, axes) for r in rows]
    with rc_context(STYLE):
        fig = Figure(figsize=(8, 1.0 + 0.28 * len(rows)))
        ax = fig.subplots()
        y = np.arange(len(rows))[::-1]
        ax.barh(y, [r.metrics["psr"] for r in rows], color="#4c72b0", alpha=0.6)
        ax.errorbar([r.metrics["psr"] for r in rows], y, xerr=_errors(rows), fmt="o", color="black", markersize=3, capsize=3)
        ax.set_yticks(y, labels)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("protection success rate (PSR), bars: 95% bootstrap CI")
        return Plot("PSR per cell", f"One bar per cell ({' / '.join(axes)}); whiskers are the 95% CI.", _png(fig))


def _baseline_only(rows: Sequence[ResultRow]) -> tuple[list[ResultRow], str]:
    """Rows without a countermeasure when there are any (a heatmap should not mix them), else all rows."""
    clean = [r for r in rows if axis_value(r, "countermeasure") in ("", NO_COUNTERMEASURE)]
    if clean and len(clean) < len(rows):
        return clean, "cells without a countermeasure"
    return list(rows), "all cells"


def heatmap(rows: Sequence[ResultRow]) -> Plot | None:
    """Cloak x victim PSR, one panel per tracker; a square is the mean over seeds and any other axis."""
    rows, which = _baseline_only(_measured(rows))
    if not rows:
        return None
    cloaks = sorted({axis_value(r, "cloak") for r in rows})
    victims = sorted({axis_value(r, "victim") for r in rows})
    trackers = sorted({axis_value(r, "tracker") for r in rows})
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        cells[(axis_value(r, "tracker"), axis_value(r, "cloak"), axis_value(r, "victim"))].append(r.metrics["psr"])
    with rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(1.5 + (1.2 + 0.9 * len(victims)) * len(trackers), 1.2 + 0.45 * len(cloaks)))
        panels = np.atleast_1d(fig.subplots(1, len(trackers), squeeze=False)[0])
        for ax, tracker in zip(panels, trackers, strict=True):
            grid = np.full((len(cloaks), len(victims)), np.nan)
            for (t, cloak, victim), values in cells.items():
                if t == tracker:
                    grid[cloaks.index(cloak), victims.index(victim)] = float(np.mean(values))
            ax.imshow(np.ma.masked_invalid(grid), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                if value == value:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
            ax.set_xticks(range(len(victims)), victims, rotation=30, ha="right")
            ax.set_yticks(range(len(cloaks)), cloaks if ax is panels[0] else [])
            ax.set_title(f"tracker: {tracker}")
        fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), "viridis"), ax=list(panels), label="PSR")
        return Plot("Cloak x victim", f"Mean PSR over seeds and other axes, {which}; blank: not measured.", _png(fig))


def psr_vs_dssim(rows: Sequence[ResultRow]) -> Plot | None:
    """Protection against perceptual cost (DSSIM on the aligned crop), one colour per cloak."""
    rows = [r for r in _measured(rows) if finite(r.metrics.get("dssim"))]
    if not rows:
        return None
    with rc_context(STYLE):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for cloak in sorted({axis_value(r, "cloak") for r in rows}):
            mine = [r for r in rows if axis_value(r, "cloak") == cloak]
            ax.errorbar([r.metrics["dssim"] for r in mine], [r.metrics["psr"] for r in mine], yerr=_errors(mine),
                        fmt="o", capsize=3, alpha=0.8, label=cloak)
        ax.set_xlabel("DSSIM on the aligned crop (perceptual cost)")
        ax.set_ylabel("PSR")
        ax.set_ylim(-0.05, 1.05)
        _legend(ax)
        return Plot("PSR vs perceptual cost", "One point per cell (victims and trackers share their cloak's DSSIM); "
                    "whiskers are the 95% CI.", _png(fig))


def _family(row: ResultRow) -> str:
    """The countermeasure family of a cell and where it was applied ("jpeg on uploads"); "none" without one."""
    spec = axis_value(row, "countermeasure")
    if spec in ("", NO_COUNTERMEASURE):
        return NO_COUNTERMEASURE
    family, side = countermeasure_setting(spec)[0], axis_value(row, "countermeasure_side")
    return f"{family} on {side}" if side else family


def _tick(row: ResultRow) -> str:
    """The setting of a cell's countermeasure, e.g. "50" for "jpeg:50"; "none" without one."""
    if _family(row) == NO_COUNTERMEASURE:
        return NO_COUNTERMEASURE
    return countermeasure_setting(axis_value(row, "countermeasure"))[1]


def psr_vs_countermeasure(rows: Sequence[ResultRow]) -> Plot | None:
    """PSR against each countermeasure's setting, one panel per countermeasure family; shown only when the rows
    carry a countermeasure axis. The cells without a countermeasure are each panel's first point."""
    rows = _measured(rows)
    families = sorted({_family(r) for r in rows} - {NO_COUNTERMEASURE})
    if not families:
        return None
    series_axes = [a for a in varying_axes(rows) if not a.startswith("countermeasure")]  # the panels show those
    with rc_context(STYLE):
        fig = Figure(figsize=(4.5 * len(families), 4.2))
        panels = fig.subplots(1, len(families), squeeze=False)[0]
        for ax, family in zip(panels, families, strict=True):
            mine = [r for r in rows if _family(r) in (family, NO_COUNTERMEASURE)]
            ticks = [NO_COUNTERMEASURE, *sorted({_tick(r) for r in mine} - {NO_COUNTERMEASURE}, key=setting_order)]
            by_series: dict[str, list[ResultRow]] = defaultdict(list)
            for r in mine:
                by_series[cell_label(r, series_axes)].append(r)
            for label, members in sorted(by_series.items()):
                members.sort(key=lambda r: ticks.index(_tick(r)))
                ax.errorbar([ticks.index(_tick(r)) for r in members], [r.metrics["psr"] for r in members],
                            yerr=_errors(members), marker="o", capsize=3, label=label)
            ax.set_xticks(range(len(ticks)), ticks)
            ax.set_xlabel(f"{family} setting")
            ax.set_ylabel("PSR")
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(family)
        _legend(panels[-1])
        return Plot("PSR vs countermeasure", f"Series: {' / '.join(series_axes)}. Settings in numeric order "
                    "(for JPEG a lower quality is the stronger countermeasure); whiskers are the 95% CI.", _png(fig))


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: series may be many


def all_plots(rows: Sequence[ResultRow]) -> list[Plot]:
    """Every plot that has something to show for these rows, in reading order."""
    made = (psr_vs_countermeasure(rows), heatmap(rows), psr_vs_dssim(rows), ci_bars(rows))
    return [p for p in made if p is not None]
