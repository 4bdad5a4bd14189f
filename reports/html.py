"""Self-contained HTML report: results table, provenance and an image grid (clean, cloaked, amplified change)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

from fawkes_eval.results import ImageExample, ResultRow

DIFF_GAIN = 10.0  # cloaks change pixels by a few units; x10 around mid-grey makes the pattern visible


def png_data_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def amplified_difference(clean: np.ndarray, cloaked: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
    diff = cloaked.astype(np.float32) - clean.astype(np.float32)
    return np.clip(128.0 + gain * diff, 0, 255).astype(np.uint8)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # identity names and paths come from user folders: never trust them as markup
        undefined=jinja2.StrictUndefined,
    )


def render_html(
    title: str,
    rows: list[ResultRow],
    examples: list[ImageExample],
    context: dict[str, Any],
    redact: bool = False,
) -> str:
    """Render the report. ``redact`` leaves faces out (the people shown are the ones being protected)."""
    grid = [] if redact else [
        {
            "label": ex.label,
            "clean": png_data_uri(ex.clean),
            "cloaked": png_data_uri(ex.cloaked),
            "diff": png_data_uri(amplified_difference(ex.clean, ex.cloaked)),
        }
        for ex in examples
    ]
    table = [
        {"cell": r.cell, "m": r.metrics, "per_user": r.per_user}
        for r in sorted(rows, key=lambda r: (str(r.cell.get("cloak")), str(r.cell.get("victim")), str(r.cell.get("tracker"))))
    ]
    return _environment().get_template("report.html.j2").render(
        title=title, rows=table, grid=grid, redacted=redact, context=context, gain=DIFF_GAIN
    )
