"""Report plots as PNG data URIs (matplotlib, Agg): CI bars, a cloak x victim heatmap, the headline vs DSSIM, vs
cloak strength (the modes of one cloak family) and vs countermeasure setting. Each is a pure function of the rows
of one scenario, draws that scenario's headline rate (PSR for ``protection``) and returns None where it has nothing
to show. The figures a scenario asks for itself are drawn by ``reports.figures``."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
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


def png_uri(fig: Figure) -> str:
    FigureCanvasAgg(fig)  # a Figure built without pyplot needs a canvas to draw on
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _value(row: ResultRow) -> float:
    """The row's headline rate (PSR for the protection scenario)."""
    return float(row.metrics[row.headline])


def headline_name(rows: Sequence[ResultRow]) -> str:
    """How the rows' headline is called in their table ("PSR" from "PSR [95% CI]")."""
    if not rows:
        return "headline"
    columns = rows[0].columns
    name = columns[0][1] if columns else rows[0].headline
    return name.replace("[95% CI]", "").strip() or rows[0].headline


def _errors(rows: Sequence[ResultRow]) -> np.ndarray:
    """(2, N) distances from each headline to its CI bounds, for matplotlib's asymmetric error bars."""
    value = np.array([_value(r) for r in rows])
    low = np.array([r.metrics.get(f"{r.headline}_ci_low", np.nan) for r in rows])
    high = np.array([r.metrics.get(f"{r.headline}_ci_high", np.nan) for r in rows])
    return np.nan_to_num(np.stack([value - low, high - value]).clip(min=0.0))


def _measured(rows: Sequence[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if finite(r.metrics.get(r.headline))]


def ci_bars(rows: Sequence[ResultRow]) -> Plot | None:
    """Every cell's headline with its bootstrap 95% CI, one bar per cell."""
    rows = sort_rows(_measured(rows))
    if not rows:
        return None
    name = headline_name(rows)
    axes = varying_axes(rows)
    labels = [cell_label(r, axes) for r in rows]
    with rc_context(STYLE):
        fig = Figure(figsize=(8, 1.0 + 0.28 * len(rows)))
        ax = fig.subplots()
        y = np.arange(len(rows))[::-1]
        ax.barh(y, [_value(r) for r in rows], color="#4c72b0", alpha=0.6)
        ax.errorbar([_value(r) for r in rows], y, xerr=_errors(rows), fmt="o", color="black", markersize=3, capsize=3)
        ax.set_yticks(y, labels)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(f"{name}, bars: 95% bootstrap CI")
        return Plot(f"{name} per cell", f"One bar per cell ({' / '.join(axes)}); whiskers are the 95% CI.", png_uri(fig))


def _baseline_only(rows: Sequence[ResultRow]) -> tuple[list[ResultRow], str]:
    """Rows without a countermeasure when there are any (a heatmap should not mix them), else all rows."""
    clean = [r for r in rows if axis_value(r, "countermeasure") in ("", NO_COUNTERMEASURE)]
    if clean and len(clean) < len(rows):
        return clean, "cells without a countermeasure"
    return list(rows), "all cells"


def heatmap(rows: Sequence[ResultRow]) -> Plot | None:
    """Cloak x victim headline, one panel per tracker; a square is the mean over seeds and any other axis."""
    rows, which = _baseline_only(_measured(rows))
    if not rows:
        return None
    name = headline_name(rows)
    cloaks = sorted({axis_value(r, "cloak") for r in rows})
    victims = sorted({axis_value(r, "victim") for r in rows})
    trackers = sorted({axis_value(r, "tracker") for r in rows})
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        cells[(axis_value(r, "tracker"), axis_value(r, "cloak"), axis_value(r, "victim"))].append(_value(r))
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
        fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), "viridis"), ax=list(panels), label=name)
        return Plot("Cloak x victim", f"Mean {name} over seeds and other axes, {which}; blank: not measured.", png_uri(fig))


def psr_vs_dssim(rows: Sequence[ResultRow]) -> Plot | None:
    """The headline against perceptual cost (DSSIM on the aligned crop), one colour per cloak."""
    rows = [r for r in _measured(rows) if finite(r.metrics.get("dssim"))]
    if not rows:
        return None
    name = headline_name(rows)
    with rc_context(STYLE):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for cloak in sorted({axis_value(r, "cloak") for r in rows}):
            mine = [r for r in rows if axis_value(r, "cloak") == cloak]
            ax.errorbar([r.metrics["dssim"] for r in mine], [_value(r) for r in mine], yerr=_errors(mine),
                        fmt="o", capsize=3, alpha=0.8, label=cloak)
        ax.set_xlabel("DSSIM on the aligned crop (perceptual cost)")
        ax.set_ylabel(name)
        ax.set_ylim(-0.05, 1.05)
        outside_legend(ax)
        return Plot(f"{name} vs perceptual cost", "One point per cell (victims and trackers share their cloak's DSSIM); "
                    "whiskers are the 95% CI.", png_uri(fig))


def _family(row: ResultRow) -> str:
    """The countermeasure family of a cell and where it was applied ("jpeg on uploads"); "none" without one."""
    spec = axis_value(row, "countermeasure")
    if spec in ("", NO_COUNTERMEASURE):
        return NO_COUNTERMEASURE
    family, side = countermeasure_setting(spec)[0], axis_value(row, "countermeasure_side")
    if _whole(spec):
        family = UPLOAD_FAMILY
    return f"{family} on {side}" if side else family


UPLOAD_FAMILY = "chains and presets"


def _whole(spec: str) -> bool:
    """A chain (``rescale:0.5>jpeg:75``) or a setting-less preset (``instagram-like``): ticked by its full label."""
    return ">" in spec or ":" not in spec


def _tick(row: ResultRow) -> str:
    """The setting of a cell's countermeasure, e.g. "50" for "jpeg:50"; "none" without one."""
    if _family(row) == NO_COUNTERMEASURE:
        return NO_COUNTERMEASURE
    spec = axis_value(row, "countermeasure")
    return spec if _whole(spec) else countermeasure_setting(spec)[1]


def psr_vs_countermeasure(rows: Sequence[ResultRow]) -> Plot | None:
    """The headline against each countermeasure's setting, one panel per countermeasure family; shown only when the rows
    carry a countermeasure axis. The cells without a countermeasure are each panel's first point."""
    rows = _measured(rows)
    families = sorted({_family(r) for r in rows} - {NO_COUNTERMEASURE})
    if not families:
        return None
    name = headline_name(rows)
    series_axes = [a for a in varying_axes(rows) if not a.startswith("countermeasure")]  # the panels show those
    with rc_context(STYLE):
        fig = Figure(figsize=(4.5 * len(families), 4.2))
        panels = fig.subplots(1, len(families), squeeze=False)[0]
        for ax, family in zip(panels, families, strict=True):
            mine = [r for r in rows if _family(r) in (family, NO_COUNTERMEASURE)]
            ticks = [NO_COUNTERMEASURE, *sorted({_tick(r) for r in mine} - {NO_COUNTERMEASURE}, key=setting_order)]
            _series_panel(ax, mine, series_axes, ticks, _tick, name, family, f"{family} setting")
        outside_legend(panels[-1])
        return Plot(f"{name} vs countermeasure", f"Series: {' / '.join(series_axes)}. Settings in numeric order "
                    "(for JPEG a lower quality is the stronger countermeasure); whiskers are the 95% CI.", png_uri(fig))


def _series_panel(ax: Axes, rows: Sequence[ResultRow], series_axes: Sequence[str], ticks: Sequence[str],
                  tick: Callable[[ResultRow], str], name: str, title: str, x_label: str) -> None:
    """One panel: a line with CI whiskers per series (a label over ``series_axes``), points at their tick."""
    by_series: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_series[cell_label(r, series_axes)].append(r)
    for label, members in sorted(by_series.items()):
        members.sort(key=lambda r: ticks.index(tick(r)))
        ax.errorbar([ticks.index(tick(r)) for r in members], [_value(r) for r in members], yerr=_errors(members),
                    marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(ticks)), ticks)
    ax.set_xlabel(x_label)
    ax.set_ylabel(name)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)


def _mode(row: ResultRow) -> str:
    """A cell's cloak mode ("high" for "fawkes-v1.0:high"); "none" for the clean baseline."""
    return axis_value(row, "cloak").partition(":")[2] or NO_COUNTERMEASURE


def outside_legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: series may be many


# the order of cloak modes from weakest to strongest (DESIGN.md section 3); other modes follow in text order
MODE_ORDER = ("min", "low", "mid", "high", "ultra")


def _mode_order(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)), mode


def psr_vs_strength(rows: Sequence[ResultRow]) -> Plot | None:
    """The headline against cloak strength: one panel per cloak family run at two or more of its modes
    (``fawkes-v1.0:low``, ``:mid``, ``:high``), the clean baseline (``none``) as each panel's first point; one
    series per victim / tracker / countermeasure / ... . Entries with options are variants, not strengths: left out."""
    rows = [r for r in _measured(rows) if not r.cell.get("cloak_options")]
    modes: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        family, _, mode = axis_value(r, "cloak").partition(":")
        if mode:
            modes[family].add(mode)
    families = sorted(f for f, m in modes.items() if len(m) >= 2)
    if not families:
        return None
    name = headline_name(rows)
    series_axes = [a for a in varying_axes(rows, always=("victim", "tracker"))
                   if a not in ("cloak", "cloak_options", "surrogates")]
    with rc_context(STYLE):
        fig = Figure(figsize=(4.5 * len(families), 4.2))
        panels = fig.subplots(1, len(families), squeeze=False)[0]
        for ax, family in zip(panels, families, strict=True):
            ticks = [NO_COUNTERMEASURE, *sorted(modes[family], key=_mode_order)]
            mine = [r for r in rows if axis_value(r, "cloak") == "none"
                    or axis_value(r, "cloak").partition(":")[0] == family]
            _series_panel(ax, mine, series_axes, ticks, _mode, name, family, f"{family} mode (none: the clean baseline)")
        outside_legend(panels[-1])
        return Plot(f"{name} vs cloak strength", f"Series: {' / '.join(series_axes)}. Modes from weakest to "
                    "strongest; whiskers are the 95% CI; surrogate sets are drawn as one series each only where "
                    "they are an axis.", png_uri(fig))


def all_plots(rows: Sequence[ResultRow]) -> list[Plot]:
    """Every plot that has something to show for these rows (one scenario's), in reading order."""
    made = (psr_vs_strength(rows), psr_vs_countermeasure(rows), heatmap(rows), psr_vs_dssim(rows), ci_bars(rows))
    return [p for p in made if p is not None]
