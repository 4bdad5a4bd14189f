"""Reports that give a verdict, on real runs: one sentence per cloak at the top of the HTML and Markdown reports;
per-scenario sections with the cloak-strength plot and every figure a scenario puts in its rows (a scenario defined
here emits a ROC curve and a similarity histogram); the environment once; an upload chain through a real campaign
into the rows and MLflow; and the comparison page over two campaigns, rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DEMO_DATA, EVIL, CampaignRun
from markupsafe import escape
from test_report_browser import CHROMIUM, DevToolsPipe, load_page
from test_seam import NearestUpload

from fawkes_eval.baselines import above_baseline_keys
from fawkes_eval.cli import main
from fawkes_eval.registry import SCENARIOS
from fawkes_eval.results import ResultRow, read_rows
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import ReportColumn, ScenarioCell, ScenarioResult
from reports.html import render_html, sections
from reports.markdown import markdown_summary
from reports.plots import psr_vs_strength
from reports.verdict import threat_axes, threat_label, verdicts

pytestmark = pytest.mark.slow
load_rooms()
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
CHAIN = "rescale:0.5>jpeg:75"


# --- a scenario that asks for figures -----------------------------------------------------------------------------

class PairScores(NearestUpload):
    """Test scenario: a clean photo of a user against every upload (the user's own cloaked, everyone else's clean;
    cloaked as ``test_seam.NearestUpload`` does); the user is unlinked when the most similar upload is someone
    else's. Its rows carry the figures the report must draw: the ROC of same-user against impostor similarities
    (FAR 1e-2 marked) and their histogram; the baseline's rows also carry one malformed figure, which the report
    must name and leave out."""

    name = "pair-scores"
    headline = "unlinked"
    columns = (ReportColumn("unlinked", "unlinked [95% CI]"),)

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        from fawkes_eval.metrics import hierarchical_bootstrap
        from scenarios.photos import EmbeddingCache
        from scenarios.protection import Transformed

        data = cell.data
        cloaked = self._cloaked[(cell.generator.name, data.seed)]
        uploads = sorted(i for idx in data.split.train.values() for i in idx)
        photos = [cloaked.get(i, data.photos[i]) for i in uploads]
        if cell.countermeasure is not None:
            photos = list(Transformed(photos, cell.countermeasure, data.seed))
        cache = EmbeddingCache(cell.victim, data.aligner)
        gallery = cache.embed(photos, [data.sources[i] for i in uploads], [data.photos[i] for i in uploads])
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        owners = np.array([data.identities[i] for i in uploads])
        outcomes, same, other = {}, [], []
        for user in data.protected:
            queries = data.split.test[user]
            q = cache.embed([data.photos[i] for i in queries], [data.sources[i] for i in queries])
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            scores = q @ gallery.T
            outcomes[user] = [bool(owners[j] != user) for j in np.argmax(scores, axis=1)]
            same += scores[:, owners == user].ravel().tolist()
            other += scores[:, owners != user].ravel().tolist()
        rate = hierarchical_bootstrap([np.array(o, float) for o in outcomes.values()], data.seed, cell.n_boot)
        thresholds = np.quantile(other, np.linspace(0.0, 1.0, 41))
        far = [float(np.mean(np.array(other) >= t)) for t in thresholds]
        tar = [float(np.mean(np.array(same) >= t)) for t in thresholds]
        at = float(np.quantile(other, 0.99))
        edges = np.linspace(-1.0, 1.0, 21)
        figures: list[Any] = [
            {"kind": "curve", "id": "roc", "title": "ROC: same user vs impostors", "x_label": "false accept rate",
             "y_label": "true accept rate", "x_log": True, "series": {"uploads": {"x": far, "y": tar}},
             "marks": {"FAR 1e-2": [0.01, float(np.mean(np.array(same) >= at))]}},
            {"kind": "histogram", "id": "similarity", "title": "Similarity: same user vs impostors",
             "x_label": "cosine similarity", "edges": edges.tolist(),
             "series": {"same user": np.histogram(same, edges)[0].tolist(),
                        "impostors": np.histogram(other, edges)[0].tolist()}},
        ]
        if cell.generator.name == "none":
            figures.append({"kind": "curve", "id": "broken", "series": {"a": {"x": [1, 2], "y": [1]}}})
        return ScenarioResult({"unlinked": rate.value, "unlinked_ci_low": rate.low, "unlinked_ci_high": rate.high},
                              {u: float(np.mean(o)) for u, o in outcomes.items()}, outcomes,
                              {"figures": figures, "n_queries": sum(map(len, outcomes.values()))})


if "pair-scores" not in SCENARIOS:
    SCENARIOS.register("pair-scores", summary="test: same-user vs impostor similarities, with figures")(PairScores)

FIGURE_CAMPAIGN = f"""\
study: verdict-tests
campaign: figures
roots:
  data: data
datasets:
  - {{name: sample, root: "data:sample"}}
protected:
  users: ["{EVIL}", Tony_Blair]
grid:
  scenarios: [pair-scores]
  cloaks: [none, noise:high]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet-torch]
  trackers: [1nn]
  countermeasures: [none, [rescale:0.5, jpeg:75]]
protocol: {{n_boot: 200, countermeasure_side: both}}
"""


class FigureRun:
    def __init__(self, folder: Path, uri: str) -> None:
        self.folder, self.uri = folder, uri
        self.results = folder / "fawkes-eval-out" / "figures"
        self.rows = read_rows(self.results / "results.json")


@pytest.fixture(scope="module")
def figure_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FigureRun]:
    """The campaign above, once, in this process (the scenario is registered here only)."""
    folder = tmp_path_factory.mktemp("figures")
    shutil.copytree(DEMO_DATA, folder / "data" / "sample")
    (folder / "data" / "sample" / "Laura_Bush").rename(folder / "data" / "sample" / EVIL)
    (folder / "campaign.yaml").write_text(FIGURE_CAMPAIGN)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("FAWKES_EVAL_CACHE", str(folder / "cache"))
        mp.chdir(folder)
        assert main(["run", "campaign.yaml"]) == 0
    yield FigureRun(folder, uri)


# --- the verdict --------------------------------------------------------------------------------------------------

def _expected(rows: list[ResultRow]) -> dict[str, dict[str, list[str]]]:
    """Per cloak: which threat models the rows put above the baseline, which not, which have none."""
    axes = threat_axes(rows)
    out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.cell["cloak"] == "none":
            continue
        low = r.metrics.get(above_baseline_keys(r.headline)[1])
        kind = "none" if low is None else "above" if low > 0 else "not"
        out.setdefault(r.cell["cloak"], {"above": [], "not": [], "none": []})[kind].append(threat_label(r, axes))
    return out


def test_the_verdict_names_where_each_cloak_is_above_the_baseline(gate_run: CampaignRun) -> None:
    found = {v.cloak.split(" via ")[0].split("{")[0]: v for v in verdicts(gate_run.rows)}
    expected = _expected(gate_run.rows)
    strong = found["fawkes-v1.0:high"]
    assert sorted(strong.above) == sorted(expected["fawkes-v1.0:high"]["above"]) and strong.above
    assert sorted(strong.not_above) == sorted(expected["fawkes-v1.0:high"]["not"])
    assert "protection: dlib-resnet-torch / 1nn" in strong.above  # the white-box cloak against the tracker it beat
    sentence = strong.sentence()
    assert sentence.startswith("fawkes-v1.0:high via dlib-resnet-torch: its protection is above the clean baseline "
                               "against [protection: dlib-resnet-torch / 1nn]")
    assert sentence.count(".") >= 1 and sentence.endswith("].")
    assert all(not v.above for k, v in found.items() if k == "noise:high")  # the control shows nothing
    # without the none cloak there is nothing to compare with, and the sentence says so
    bare = [replace(r, metrics={k: v for k, v in r.metrics.items() if "baseline" not in k})
            for r in gate_run.rows if r.cell["cloak"] != "none"]
    assert all("no clean baseline was run" in v.sentence() for v in verdicts(bare))


def test_html_and_markdown_open_with_the_verdict_and_show_the_environment_once(gate_run: CampaignRun) -> None:
    html = render_html(EVIL, gate_run.rows, [], {"source": EVIL})
    assert html.index('id="verdict"') < html.index('<table class="results"')
    for v in verdicts(gate_run.rows):
        assert f"<li data-cloak=\"{escape(v.cloak)}\">{escape(v.sentence())}</li>" in html
    assert html.count("<dt>torch</dt>") == 1 and html.count('id="environment"') == 1
    summary = markdown_summary(EVIL, gate_run.rows)
    assert summary.index("## Verdict") < summary.index("## Scenario: protection") < summary.index("## Environment")
    assert summary.count("torch 2.") + summary.count("torch: 2.") == 1  # once, not in "Measured on" too
    assert summary.count("license MIT") == 1  # and the models once
    report = (gate_run.results / "report.md").read_text()  # the campaign's own page, written by the runner
    assert report.index("## Verdict") < report.index("| cloak |") and EVIL not in report


def test_the_strength_plot_needs_two_modes_of_one_family(gate_run: CampaignRun) -> None:
    plot = psr_vs_strength(gate_run.rows)
    assert plot is not None and plot.title == "PSR vs cloak strength" and plot.data_uri.startswith("data:image/png")
    assert psr_vs_strength([r for r in gate_run.rows if r.cell["cloak"] != "fawkes-v1.0:low"]) is None


# --- figures, chains and the comparison page on the run above ------------------------------------------------------

def test_every_scenario_figure_is_drawn_in_its_section(figure_run: FigureRun) -> None:
    rows = figure_run.rows
    assert {r.cell["countermeasure"] for r in rows} == {"none", CHAIN}
    (section,) = sections(rows)
    titles = [p.title for p in section.plots]
    assert "ROC: same user vs impostors" in titles and "Similarity: same user vs impostors" in titles
    assert titles.count("ROC: same user vs impostors") == 1  # the four cells' curves in one plot
    assert len(section.problems) == 2 and all("series 'a': x and y differ in length" in p for p in section.problems)
    html = render_html("figures", rows, [], {})
    page = html[html.index('<section class="scenario" data-scenario="pair-scores">'):]
    assert page[:page.index("</section>")].count('<img src="data:image/png;base64,') == len(section.plots)
    assert "Not drawn: figure 2 of cell" in html and EVIL not in html
    assert "## Scenario: pair-scores" in (figure_run.results / "report.md").read_text()


def test_a_chain_reaches_the_rows_and_mlflow(figure_run: FigureRun) -> None:
    from mlflow.tracking import MlflowClient

    chained = [r for r in figure_run.rows if r.cell["countermeasure"] == CHAIN]
    assert len(chained) == 2 and all(r.cell["countermeasure_side"] == "both" for r in chained)
    client = MlflowClient(figure_run.uri)
    experiment = client.get_experiment_by_name("verdict-tests")
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(c.data.params.get("countermeasure", "-") for c in children) == ["-", "-", CHAIN, CHAIN]
    assert {c.data.tags["fe.countermeasure"] for c in children} == {"none", CHAIN}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_the_comparison_page_renders_cleanly_in_chromium(gate_run: CampaignRun, figure_run: FigureRun,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert main(["report", str(gate_run.results), str(figure_run.results), "--out", str(out), "--title", EVIL]) == 0
    page = out / "comparison.html"
    html = page.read_text()
    assert EVIL not in html and "<script" not in html
    cloaks = {r.cell["cloak"] for r in [*gate_run.rows, *figure_run.rows]}
    assert html.count("<tr") == 1 + (len(cloaks) + 1) + 1 + 2  # header, cloaks (noise:high twice), campaigns
    for link in set(re.findall(r'href="([^"#]+)#(cell-[0-9a-f]+)"', html)):  # every value links to its row
        target = (out / link[0]).read_text()
        assert f'id="{link[1]}"' in target
    assert len(re.findall(r'href="[^"]+#cell-', html)) == len(gate_run.rows) + len(figure_run.rows)
    assert "pair-scores: dlib-resnet-torch / 1nn / rescale:0.5&gt;jpeg:75 on both" in html
    assert html.count('class="tag above">above clean</span>') == sum(
        1 for r in [*gate_run.rows, *figure_run.rows] if r.metrics.get(above_baseline_keys(r.headline)[1], 0) > 0)
    pipe = DevToolsPipe(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")  # type: ignore[arg-type]
    try:
        problems, requested, facts, pixels = load_page(pipe, page)
    finally:
        pipe.close()
    assert problems == [] and facts["title"] == EVIL and facts["scripts"] == 0 and facts["images"] == 0
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
    assert np.any(pixels < 240, axis=2).mean() > 0.02  # not blank
    board = json.loads((out / "gate" / "leaderboard.json").read_text())
    assert board["entries"]  # each campaign's own reports were written beside the page
