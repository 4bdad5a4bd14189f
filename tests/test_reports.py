from __future__ import annotations

import numpy as np

from fawkes_eval.results import ImageExample, ResultRow
from reports.html import render_html
from reports.markdown import results_table

EVIL = "<script>alert(1)</script>"


def _row() -> ResultRow:
    metrics = {"psr": 0.5, "psr_ci_low": 0.25, "psr_ci_high": 0.75, "top5": 0.1, "others_acc": 0.97,
               "dssim": 0.012, "psnr": 41.0, "sec_per_image": 1.5}
    cell = {"cloak": "fawkes-v1.0:mid", "victim": "dlib-resnet", "tracker": "1nn", "seed": 0}
    return ResultRow(cell, metrics, {EVIL: 0.5}, {"dataset": EVIL, "protected_users": [EVIL]})


def test_html_escapes_everything_user_supplied() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    html = render_html(EVIL, [_row()], [ImageExample(EVIL, img, img + 3)], {"dataset": EVIL})
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("data:image/png;base64,") == 3


def test_redact_leaves_faces_out() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    html = render_html("t", [_row()], [ImageExample("x", img, img)], {}, redact=True)
    assert "data:image/png" not in html and "left out" in html


def test_markdown_table_shows_ci() -> None:
    table = results_table([_row()])
    assert "| fawkes-v1.0:mid | dlib-resnet | 1nn | 0.50 [0.25, 0.75] |" in table
