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
    assert html.count('<img src="data:image/png;base64,') >= 3  # the grid's three images, plus the plots
    assert 'alt="clean"' in html and 'alt="amplified difference"' in html


def test_redact_leaves_faces_out() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    html = render_html("t", [_row()], [ImageExample("x", img, img)], {}, redact=True)
    assert 'alt="clean"' not in html and 'alt="cloaked"' not in html and "left out" in html


def test_markdown_table_shows_ci() -> None:
    table = results_table([_row()])
    assert "| fawkes-v1.0:mid | dlib-resnet | 1nn | 0.50 [0.25, 0.75] |" in table


# --- plots, leaderboard, Markdown summary, example folders, and the `report` verb ---------------------------

import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from fawkes_eval.cli import main  # noqa: E402
from fawkes_eval.results import write_rows  # noqa: E402
from reports.examples import read_examples, write_examples  # noqa: E402
from reports.html import blurred  # noqa: E402
from reports.leaderboard import leaderboard, leaderboard_json  # noqa: E402
from reports.markdown import markdown_summary  # noqa: E402
from reports.plots import all_plots, psr_vs_countermeasure  # noqa: E402


def grid_rows(countermeasures: tuple[str, ...] = ("none",)) -> list[ResultRow]:
    rows = []
    for cloak, psr in (("fawkes-v1.0:mid", 0.8), ("noise:mid", 0.1), ("cost $5 $x^2$", 0.5)):
        for victim, factor in (("dlib-resnet", 1.0), ("mobileface", 0.5)):
            for cm in countermeasures:
                p = psr * factor * (0.5 if cm != "none" else 1.0)
                metrics = {"psr": p, "psr_ci_low": max(0.0, p - 0.1), "psr_ci_high": min(1.0, p + 0.1), "top5": p,
                           "others_acc": 0.95, "dssim": 0.01, "psnr": 40.0, "sec_per_image": 1.0}
                cell = {"cloak": cloak, "victim": victim, "tracker": "1nn", "countermeasure": cm,
                        "countermeasure_side": "" if cm == "none" else "uploads", "seed": 0}
                rows.append(ResultRow(cell, metrics, {"Tony_Blair": p}, {"dataset": "lfw_sample"}))
    return rows


def decoded(data_uri: str) -> Image.Image:
    assert data_uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


def test_plots_are_pngs_and_the_countermeasure_plot_needs_that_axis() -> None:
    plain = all_plots(grid_rows())
    assert [p.title for p in plain] == ["Cloak x victim", "PSR vs perceptual cost", "PSR per cell"]
    assert psr_vs_countermeasure(grid_rows()) is None
    swept = all_plots(grid_rows(("none", "jpeg:75", "jpeg:30", "blur:1.0")))
    assert swept[0].title == "PSR vs countermeasure"  # "$" in a cloak name did not trip matplotlib's mathtext
    assert "Series: cloak / victim / tracker." in swept[0].caption  # where it was applied names the panel instead
    for plot in swept:
        with decoded(plot.data_uri) as image:
            assert image.width > 200 and image.height > 100
    assert all_plots([]) == []


def test_leaderboard_ranks_by_worst_case_and_is_strict_json() -> None:
    rows = grid_rows()
    rows[0].metrics["dssim"] = float("nan")  # not measured: null, not NaN
    board = json.loads(leaderboard_json(rows))
    assert [e["cloak"] for e in board["entries"]] == ["fawkes-v1.0:mid", "cost $5 $x^2$", "noise:mid"]
    top = board["entries"][0]
    assert top["rank"] == 1 and top["worst_psr"] == pytest.approx(0.4) and top["worst_cell"]["victim"] == "mobileface"
    assert top["mean_dssim"] == pytest.approx(0.01) and top["cells"][0]["dssim"] is None
    assert leaderboard([])["entries"] == []


def test_markdown_summary_escapes_names_and_shows_varying_axes() -> None:
    rows = grid_rows(("none", "jpeg:50"))
    rows[0].cell["victim"] = "a|b <i>"
    text = markdown_summary(EVIL, rows)
    assert EVIL not in text and "&lt;script&gt;" in text and "a\\|b &lt;i&gt;" in text
    assert "| cloak | victim | tracker | countermeasure | countermeasure_side | PSR [95% CI] |" in text
    assert "1. fawkes-v1.0:mid: worst-case PSR 0.20 [0.10, 0.30], mean PSR" in text


def test_example_folders_round_trip_and_bad_ones_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_examples([ImageExample("fawkes-v1.0:mid / a b.jpg", clean, clean ^ 1)], tmp_path / "ex")
    (back,) = read_examples(tmp_path / "ex")
    assert back.label == "fawkes-v1.0:mid / a b.jpg" and np.array_equal(back.cloaked, clean ^ 1)
    assert read_examples(tmp_path / "absent") == []
    (tmp_path / "ex" / "examples.json").write_text(json.dumps([{"label": "x", "clean": "../etc", "cloaked": "y"}]))
    with pytest.raises(ValueError, match="examples.json.*not a file name inside"):
        read_examples(tmp_path / "ex")
    (tmp_path / "ex" / "examples.json").unlink()  # without the index: pairs by file name
    Image.fromarray(clean[:8]).save(next((tmp_path / "ex").glob("*.cloaked.png")))
    with pytest.raises(ValueError, match=r"cloaked\.png: size"):
        read_examples(tmp_path / "ex")


def test_blur_redaction_keeps_no_face_detail() -> None:
    face = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    soft = blurred(face)
    assert soft.shape == face.shape
    assert np.abs(np.diff(soft.astype(int), axis=1)).mean() < 0.2 * np.abs(np.diff(face.astype(int), axis=1)).mean()
    html = render_html("t", [_row()], [ImageExample("x", face, face)], {}, redact="blur")
    assert 'alt="clean"' in html and "Blurred" in html


def test_report_verb_from_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "campaign"
    out.mkdir()
    write_rows([_row(), *grid_rows()], out / "results.json")
    (out / "config.json").write_text(json.dumps({"campaign": EVIL, "grid": {"cloaks": ["fawkes-v1.0:mid"]}}))
    face = np.full((16, 16, 3), 120, np.uint8)
    write_examples([ImageExample(EVIL, face, face + 2)], out / "examples")
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert EVIL not in html and html.count('alt="clean"') == 1 and "Campaign configuration" in html
    assert "&#34;campaign&#34;: &#34;&lt;script&gt;" in html  # the config is shown, escaped
    assert json.loads((tmp_path / "rep" / "leaderboard.json").read_text())["entries"]
    assert "# fawkes-eval report: campaign" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["report", str(out / "results.json"), "--out", str(tmp_path / "r2"), "--redact"]) == 0
    assert 'alt="clean"' not in (tmp_path / "r2" / "report.html").read_text()
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r3")]) == 2
    assert "nowhere: no such file or folder, and no MLflow run or experiment" in capsys.readouterr().err


def test_report_verb_from_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A campaign laid out as DESIGN.md section 4 says, in a real MLflow store: the report reads its cells by
    parent run id, by one cell's run id, and by experiment name (latest run of each cell)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("study", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="campaign").info.run_id
    client.log_dict(parent, {"campaign": "c1"}, "config.json")
    face = np.full((16, 16, 3), 90, np.uint8)
    write_examples([ImageExample("ex", face, face + 3)], tmp_path / "examples")
    client.log_artifacts(parent, str(tmp_path / "examples"), "examples")
    rows = grid_rows()
    cells = []
    for row in rows:
        child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_dict(child, row.to_dict(), "result.json")
        cells.append(child)
    client.create_run(experiment, tags={"mlflow.parentRunId": parent})  # a cell that died before logging its row

    assert main(["report", parent, "--out", str(tmp_path / "by-parent")]) == 0
    html = (tmp_path / "by-parent" / "report.html").read_text()
    assert html.count("<tr>") >= len(rows) and html.count('alt="clean"') == 1 and "&#34;campaign&#34;: &#34;c1&#34;" in html
    assert main(["report", cells[0], "--out", str(tmp_path / "by-cell")]) == 0
    assert len(json.loads((tmp_path / "by-cell" / "leaderboard.json").read_text())["entries"]) == 1
    assert main(["report", "study", "--out", str(tmp_path / "by-experiment")]) == 0
    board = json.loads((tmp_path / "by-experiment" / "leaderboard.json").read_text())
    assert sum(e["n_cells"] for e in board["entries"]) == len(rows)
