"""Self-contained HTML report: the verdict (one sentence per cloak), one section per scenario (its plots, the
figures its rows carry, its results table), image grid (clean, cloaked, amplified change), the campaign config
and what the numbers were measured on, the environment once. Everything is inline (data URIs), so the file works
offline; every name is escaped (Jinja2 autoescape)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
from PIL import Image

from fawkes_eval.results import ImageExample, ReportBundle, ResultRow
from reports.cells import finite, sort_rows
from reports.figures import figure_plots
from reports.plots import Plot, all_plots
from reports.provenance import datasets, environment_summary, models
from reports.table import Table, results_tables
from reports.verdict import BASIS, verdicts

DIFF_GAIN = 10.0  # cloaks change pixels by a few units; x10 around mid-grey makes the pattern visible
BLUR_SIDE = 8  # --redact blur: faces are shrunk to 8 px on their long side, too few for anyone to be recognised

Redaction = Literal["omit", "blur"]


def png_data_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def amplified_difference(clean: np.ndarray, cloaked: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
    diff = cloaked.astype(np.float32) - clean.astype(np.float32)
    return np.clip(128.0 + gain * diff, 0, 255).astype(np.uint8)


def blurred(pixels: np.ndarray, side: int = BLUR_SIDE) -> np.ndarray:
    """Shrink to ``side`` pixels on the long side and back: layout and colour survive, identity does not."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    scale = side / max(image.size)
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BOX)
    return np.asarray(small.resize(image.size, Image.Resampling.BILINEAR))


def _number(value: Any, spec: str) -> str:
    """Jinja filter: a metric in the given format, "n/a" where it was not measured."""
    return format(value, spec) if finite(value) else "n/a"


def jinja_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # identity names and paths come from user folders: never trust them as markup
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _number
    return env


def _grid(examples: Sequence[ImageExample], redact: Redaction | None) -> list[dict[str, str]]:
    if redact == "omit":
        return []
    shown = blurred if redact == "blur" else np.asarray
    return [
        {
            "label": ex.label,
            "clean": png_data_uri(shown(ex.clean)),
            "cloaked": png_data_uri(shown(ex.cloaked)),
            "diff": png_data_uri(shown(amplified_difference(ex.clean, ex.cloaked))),
        }
        for ex in examples
    ]


@dataclass
class Section:
    """One scenario's part of the page: its plots (the headline's and the figures its rows carry), its table, and
    the figures that could not be drawn."""

    scenario: str
    table: Table
    plots: list[Plot]
    problems: list[str]


def sections(rows: Sequence[ResultRow]) -> list[Section]:
    """One section per scenario, in the tables' order."""
    ordered = sort_rows(rows)
    out = []
    for table in results_tables(ordered):
        mine = [r for r in ordered if str(r.cell.get("scenario", "?")) == table.scenario]
        figures, problems = figure_plots(mine)
        out.append(Section(table.scenario, table, all_plots(mine) + figures, problems))
    return out


def render_html(
    title: str,
    rows: list[ResultRow],
    examples: list[ImageExample],
    context: dict[str, Any],
    redact: bool | Redaction = False,
    config: Mapping[str, Any] | None = None,
    left_out: Sequence[Mapping[str, str]] = (),
) -> str:
    """Render the report.

    ``redact`` protects the people shown (they are the ones being protected): ``"omit"`` (or True) leaves faces
    out, ``"blur"`` shows them too coarse to recognise. ``config`` is the campaign's resolved configuration;
    ``context`` holds further "measured on" lines (key -> text); ``left_out`` the files the run could not use
    (rows of the campaign's ``errors.json``: dataset, file, reason, kind).
    """
    mode: Redaction | None = "omit" if redact is True else (redact or None)
    if mode not in (None, "omit", "blur"):
        raise ValueError(f"redact must be 'omit' or 'blur', got {redact!r}")
    ordered = sort_rows(rows)
    return jinja_environment().get_template("report.html.j2").render(
        title=title, sections=sections(ordered), n_cells=len(ordered), verdicts=verdicts(ordered), basis=BASIS,
        grid=_grid(examples, mode),
        has_examples=bool(examples), redaction=mode, gain=int(DIFF_GAIN),
        datasets=datasets(ordered), models=models(ordered), environment=environment_summary(ordered),
        config=json.dumps(config, indent=1, sort_keys=True, default=str) if config else "", context=context,
        left_out=left_out,
    )


def html_report(bundle: ReportBundle) -> str:
    """``report.html``, faces shown (the campaign's own results folder)."""
    return render_html(bundle.title, bundle.rows, bundle.examples, bundle.context, config=bundle.config,
                       left_out=bundle.left_out)
