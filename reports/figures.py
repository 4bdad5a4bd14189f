"""The figures scenarios ask for, drawn generically: every object in a row's ``provenance["figures"]``.

Two kinds (the shape every scenario follows; checked here, a malformed figure is reported, never drawn):

- ``{"kind": "curve", "id", "title", "x_label", "y_label", "x_log", "series": {label: {"x": [...], "y": [...]}},
  "marks": {label: [x, y]}}``: lines (ROC with its FAR points, protection@k, ...);
- ``{"kind": "histogram", "id", "title", "x_label", "edges": [...], "series": {label: [count, ...]}}``: counts per
  bin (``len(edges) - 1`` each), drawn as the share of each series per bin so that series of different sizes
  (same-user pairs against impostors) compare.

Figures with the same ``id`` from several cells of one scenario are drawn in one plot, each series named by its
cell, so a reader sees the cloaks side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from fawkes_eval.results import ResultRow
from reports.cells import cell_label, varying_axes
from reports.plots import STYLE, Plot, outside_legend, png_uri

MAX_POINTS = 2000  # a row is meant to carry <= 200; anything far beyond is refused rather than drawn slowly
KINDS = ("curve", "histogram")


class FigureError(ValueError):
    """A figure object that does not follow the shape above; the message says which field."""


@dataclass
class _Merged:
    kind: str
    id: str
    title: str
    x_label: str
    y_label: str = ""
    x_log: bool = False
    edges: list[float] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    marks: dict[str, tuple[float, float]] = field(default_factory=dict)


def _numbers(value: Any, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) > MAX_POINTS or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise FigureError(f"{what} must be a list of at most {MAX_POINTS} numbers")
    return [float(v) for v in value]


def _text(figure: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = figure.get(key, default)
    if not isinstance(value, str):
        raise FigureError(f"{key!r} must be a string")
    return value


def checked(figure: Any) -> _Merged:
    """One figure object, validated (raises ``FigureError`` naming the field)."""
    if not isinstance(figure, dict):
        raise FigureError("a figure must be a JSON object")
    kind = _text(figure, "kind")
    if kind not in KINDS:
        raise FigureError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = _Merged(kind, _text(figure, "id"), _text(figure, "title", ""), _text(figure, "x_label", ""))
    series = figure.get("series")
    if not isinstance(series, dict) or not series:
        raise FigureError("series must be a non-empty object of label -> data")
    if kind == "curve":
        out.y_label = _text(figure, "y_label", "")
        out.x_log = bool(figure.get("x_log", False))
        for label, data in series.items():
            if not isinstance(data, dict):
                raise FigureError(f"series {label!r} must be an object with x and y")
            x, y = _numbers(data.get("x"), f"series {label!r} x"), _numbers(data.get("y"), f"series {label!r} y")
            if len(x) != len(y):
                raise FigureError(f"series {label!r}: x and y differ in length ({len(x)} vs {len(y)})")
            out.series[str(label)] = (x, y)
        marks = figure.get("marks", {}) or {}
        if not isinstance(marks, dict):
            raise FigureError("marks must be an object of label -> [x, y]")
        for label, point in marks.items():
            xy = _numbers(point, f"mark {label!r}")
            if len(xy) != 2:
                raise FigureError(f"mark {label!r} must be [x, y]")
            out.marks[str(label)] = (xy[0], xy[1])
    else:
        out.edges = _numbers(figure.get("edges"), "edges")
        if len(out.edges) < 2 or any(b <= a for a, b in zip(out.edges, out.edges[1:], strict=False)):
            raise FigureError("edges must be at least two increasing numbers")
        for label, counts in series.items():
            values = _numbers(counts, f"series {label!r}")
            if len(values) != len(out.edges) - 1 or any(v < 0 for v in values):
                raise FigureError(f"series {label!r} must hold {len(out.edges) - 1} non-negative counts")
            out.series[str(label)] = values
    return out


def merged_figures(rows: Sequence[ResultRow]) -> tuple[list[_Merged], list[str]]:
    """The rows' figures merged by id (series named by cell where several cells carry the id), and a note for
    every figure that could not be used."""
    axes = [a for a in varying_axes(rows) if a != "scenario"]
    carriers: dict[str, int] = {}
    for row in rows:
        for figure in _figures_of(row):
            if isinstance(figure, dict) and isinstance(figure.get("id"), str):
                carriers[figure["id"]] = carriers.get(figure["id"], 0) + 1
    merged: dict[str, _Merged] = {}
    problems: list[str] = []
    for row in rows:
        for i, figure in enumerate(_figures_of(row)):
            try:
                fig = checked(figure)
            except FigureError as e:
                problems.append(f"figure {i} of cell {cell_label(row, axes)}: {e}")
                continue
            target = merged.setdefault(fig.id, _Merged(fig.kind, fig.id, fig.title, fig.x_label, fig.y_label,
                                                       fig.x_log, fig.edges))
            if target.kind != fig.kind or (fig.kind == "histogram" and target.edges != fig.edges):
                problems.append(f"figure {fig.id!r} of cell {cell_label(row, axes)}: differs in kind or bins from "
                                "the same figure of another cell; left out")
                continue
            prefix = f"{cell_label(row, axes)}: " if carriers.get(fig.id, 0) > 1 else ""
            target.series.update({prefix + k: v for k, v in fig.series.items()})
            target.marks.update({prefix + k: v for k, v in fig.marks.items()})
    return list(merged.values()), problems


def _figures_of(row: ResultRow) -> list[Any]:
    figures = row.provenance.get("figures", [])
    return figures if isinstance(figures, list) else [figures]


def _draw(fig: _Merged) -> Plot:
    with rc_context(STYLE):
        canvas = Figure(figsize=(7, 4.5))
        ax = canvas.subplots()
        if fig.kind == "curve":
            for label, (x, y) in fig.series.items():
                xs, ys = np.asarray(x), np.asarray(y)
                keep = xs > 0 if fig.x_log else np.isfinite(xs)
                ax.plot(xs[keep], ys[keep], marker="." if len(xs) <= 20 else None, label=label)
            for label, (x, y) in fig.marks.items():
                if fig.x_log and x <= 0:
                    continue
                ax.plot([x], [y], "o", color="black", markersize=4)
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
            if fig.x_log:
                ax.set_xscale("log")
            ax.set_ylabel(fig.y_label)
            caption = "One line per series" + ("; black points: the marked operating points." if fig.marks else ".")
        else:
            for label, counts in fig.series.items():
                values = np.asarray(counts)
                total = values.sum()
                ax.stairs(values / total if total else values, fig.edges, label=label)
            ax.set_ylabel("share of the series per bin")
            caption = "Counts per bin as a share of each series' total, so series of different sizes compare."
        ax.set_xlabel(fig.x_label)
        outside_legend(ax)
        return Plot(fig.title or fig.id, caption, png_uri(canvas))


def figure_plots(rows: Sequence[ResultRow]) -> tuple[list[Plot], list[str]]:
    """Every scenario figure of these rows (one scenario's), drawn; and what could not be drawn."""
    figures, problems = merged_figures(rows)
    return [_draw(f) for f in figures], problems


def has_figures(rows: Sequence[ResultRow]) -> bool:
    return any(_figures_of(r) for r in rows)

