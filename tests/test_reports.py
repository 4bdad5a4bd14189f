"""Reports from the runner's own rows (``gate_run`` in conftest: a real campaign whose protected user is named
with markup): escaping, redaction, tables per scenario, plots, leaderboard, Markdown summary, example folders,
and the ``report`` verb from a results folder and from MLflow."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import EVIL, CampaignRun
from PIL import Image

from fawkes_eval.cli import main
from fawkes_eval.results import ImageExample
from reports.examples import read_examples, write_examples
from reports.html import blurred, render_html
from reports.leaderboard import leaderboard, leaderboard_json
from reports.markdown import markdown_summary, results_table
from reports.plots import all_plots, psr_vs_countermeasure

ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def examples_of(run: CampaignRun) -> list[ImageExample]:
    return read_examples(run.results / "examples")


@pytest.mark.slow
def test_html_escapes_everything_user_supplied(gate_run: CampaignRun) -> None:
    html = render_html(EVIL, gate_run.rows, examples_of(gate_run), {"dataset": EVIL})
    assert EVIL not in html and ESCAPED in html  # title, per-user column, protected users, context
    assert html.count('<img src="data:image/png;base64,') >= 3 * len(examples_of(gate_run))
    assert 'alt="clean"' in html and 'alt="amplified difference"' in html
    campaign_page = (gate_run.results / "report.html").read_text()
    assert EVIL not in campaign_page and ESCAPED in campaign_page


@pytest.mark.slow
def test_redact_leaves_faces_out(gate_run: CampaignRun) -> None:
    html = render_html("t", gate_run.rows, examples_of(gate_run), {}, redact=True)
    assert 'alt="clean"' not in html and 'alt="cloaked"' not in html and "left out" in html


@pytest.mark.slow
def test_markdown_table_shows_each_cell_with_its_ci_and_baseline(gate_run: CampaignRun) -> None:
    table = results_table(gate_run.rows)
    header = table.splitlines()[0]
    assert header.startswith("| cloak | victim | tracker |") and "PSR [95% CI]" in header
    assert "psr above clean [95% CI]" in header and header.endswith("| verdict |")
    row = gate_run.row(cloak="fawkes-v1.0:high", tracker="1nn", countermeasure="none")
    m = row.metrics
    assert f"| {m['psr']:.2f} [{m['psr_ci_low']:.2f}, {m['psr_ci_high']:.2f}] |" in table
    assert f"| {m['psr_above_baseline']:+.2f} [{m['psr_above_baseline_ci_low']:+.2f}, " in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + len(gate_run.rows)  # + header


@pytest.mark.slow
def test_plots_are_pngs_and_the_countermeasure_plot_needs_that_axis(gate_run: CampaignRun) -> None:
    swept = all_plots(gate_run.rows)
    assert [p.title for p in swept[:2]] == ["PSR vs cloak strength", "PSR vs countermeasure"]
    assert "PSR vs perceptual cost" in [p.title for p in swept]
    for plot in swept:
        with decoded(plot.data_uri) as image:
            assert image.width > 200 and image.height > 100
    plain = [r for r in gate_run.rows if r.cell["countermeasure"] == "none"]
    assert psr_vs_countermeasure(plain) is None
    assert all_plots([]) == []


def decoded(data_uri: str) -> Image.Image:
    assert data_uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


@pytest.mark.slow
def test_leaderboard_ranks_by_worst_case_and_is_strict_json(gate_run: CampaignRun) -> None:
    text = leaderboard_json(gate_run.rows)
    assert "NaN" not in text and "Infinity" not in text  # the clean baseline's PSNR is infinite: null
    board = json.loads(text)
    worst = {}
    for r in gate_run.rows:
        worst[r.cell["cloak"]] = min(worst.get(r.cell["cloak"], 1.0), r.metrics["psr"])
    assert {e["cloak"]: e["worst_psr"] for e in board["entries"]} == pytest.approx(worst)
    ranked = [e["worst_psr"] for e in board["entries"]]
    assert ranked == sorted(ranked, reverse=True) and [e["rank"] for e in board["entries"]] == list(range(1, 5))
    assert leaderboard([])["entries"] == []


@pytest.mark.slow
def test_markdown_summary_escapes_names(gate_run: CampaignRun) -> None:
    text = markdown_summary(EVIL, gate_run.rows)
    assert EVIL not in text and ESCAPED in text
    assert "## Cloaks ranked by worst-case PSR" in text and "1. " in text


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


@pytest.mark.slow
def test_blur_redaction_keeps_no_face_detail(gate_run: CampaignRun) -> None:
    face = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    soft = blurred(face)
    assert soft.shape == face.shape
    assert np.abs(np.diff(soft.astype(int), axis=1)).mean() < 0.2 * np.abs(np.diff(face.astype(int), axis=1)).mean()
    html = render_html("t", gate_run.rows, examples_of(gate_run), {}, redact="blur")
    assert 'alt="clean"' in html and "Blurred" in html


@pytest.mark.slow
def test_report_verb_from_results_folder(gate_run: CampaignRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(gate_run.results), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert EVIL not in html and html.count('alt="clean"') == len(examples_of(gate_run)) and "Campaign configuration" in html
    assert "&#34;name&#34;: &#34;gate&#34;" in html  # the campaign's configuration is shown, escaped
    assert json.loads((tmp_path / "rep" / "leaderboard.json").read_text())["entries"]
    assert "# fawkes-eval report: gate" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["report", str(gate_run.results / "results.json"), "--out", str(tmp_path / "r2"), "--redact"]) == 0
    assert 'alt="clean"' not in (tmp_path / "r2" / "report.html").read_text()
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r3")]) == 2
    assert "nowhere: no such file or folder, and no MLflow run or experiment" in capsys.readouterr().err


@pytest.mark.slow
def test_report_verb_from_mlflow(gate_run: CampaignRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The campaign's own MLflow store: the report reads its cells by parent run id, by one cell's run id, and by
    experiment name (latest run of each cell)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", gate_run.uri)
    assert main(["report", gate_run.parent, "--out", str(tmp_path / "by-parent")]) == 0
    html = (tmp_path / "by-parent" / "report.html").read_text()
    assert html.count("<tr") >= len(gate_run.rows) and html.count('alt="clean"') == len(examples_of(gate_run))
    client = MlflowClient(gate_run.uri)
    child = client.search_runs([client.get_run(gate_run.parent).info.experiment_id],
                               f"tags.`mlflow.parentRunId` = '{gate_run.parent}'")[0].info.run_id
    assert main(["report", child, "--out", str(tmp_path / "by-cell")]) == 0
    assert len(json.loads((tmp_path / "by-cell" / "leaderboard.json").read_text())["entries"]) == 1
    assert main(["report", "gate-tests", "--out", str(tmp_path / "by-experiment")]) == 0
    board = json.loads((tmp_path / "by-experiment" / "leaderboard.json").read_text())
    assert sum(e["n_cells"] for e in board["entries"]) == len(gate_run.rows)


