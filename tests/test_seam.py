"""The scenario seam end to end on real models and photos: a scenario defined here runs through ``fawkes-eval run``;
the runner's rows follow the shipped schema; the clean baseline; the paired regression gate and its calibration;
cloaks made by another tool audited in a campaign; two processes sharing one campaign."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import DEMO_DATA, EVIL, GATE_CAMPAIGN, CampaignRun, run_campaign_file

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.baselines import above_baseline_keys
from fawkes_eval.cli import main
from fawkes_eval.data import load_dataset, split_dataset
from fawkes_eval.registry import EXTRACTORS, SCENARIOS, TRACKERS
from fawkes_eval.results import SCHEMA_FILE
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import (
    CellCost,
    CloakGenerator,
    PreparedCloaks,
    ReportColumn,
    ScenarioCell,
    ScenarioData,
    ScenarioResult,
)
from reports.compare import PROTECTION_DROP, Tolerances, compare_rows

pytestmark = [pytest.mark.heavy, pytest.mark.slow]
load_rooms()


# --- a scenario that lives in a test module -------------------------------------------------------------------

class NearestUpload:
    """Test scenario: a stranger holding one clean photo of a user looks for the user's uploads by nearest
    neighbour among everyone's uploads; the user is hidden for that photo when the nearest upload is not theirs."""

    name = "nearest-upload"
    headline = "hidden"
    columns = (ReportColumn("hidden", "hidden [95% CI]"), ReportColumn("uploads", "uploads", ".0f"))

    def __init__(self) -> None:
        self._cloaked: dict[tuple[str, int], dict[int, np.ndarray]] = {}

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks:
        from scenarios.photos import cloak_photos

        indices = [i for user in data.protected for i in data.split.train[user]]
        made, seconds = cloak_photos(generator, data.aligner, [data.photos[i] for i in indices],
                                     [data.sources[i] for i in indices], data.seed)
        self._cloaked[(generator.name, data.seed)] = {i: c.photo for i, c in zip(indices, made, strict=True)}
        return PreparedCloaks(len(made), seconds)

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        from fawkes_eval.metrics import hierarchical_bootstrap
        from scenarios.photos import EmbeddingCache

        data = cell.data
        cloaked = self._cloaked[(cell.generator.name, data.seed)]
        uploads = sorted(i for idx in data.split.train.values() for i in idx)
        cache = EmbeddingCache(cell.victim, data.aligner)
        gallery = cache.embed([cloaked.get(i, data.photos[i]) for i in uploads], [data.sources[i] for i in uploads],
                              [data.photos[i] for i in uploads])
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        owners = np.array([data.identities[i] for i in uploads])
        outcomes = {}
        for user in data.protected:
            queries = data.split.test[user]
            q = cache.embed([data.photos[i] for i in queries], [data.sources[i] for i in queries])
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            outcomes[user] = [bool(owners[j] != user) for j in np.argmax(q @ gallery.T, axis=1)]
        rate = hierarchical_bootstrap([np.array(o, float) for o in outcomes.values()], data.seed, cell.n_boot)
        metrics = {"hidden": rate.value, "hidden_ci_low": rate.low, "hidden_ci_high": rate.high,
                   "uploads": float(len(uploads))}
        return ScenarioResult(metrics, {u: float(np.mean(o)) for u, o in outcomes.items()}, outcomes,
                              {"n_identities": len(data.split.train), "n_queries": sum(map(len, outcomes.values()))})

    def cost(self, n_images: int, n_protected_train: int, n_protected_test: int) -> CellCost:
        return CellCost(n_protected_train, n_images)


if "nearest-upload" not in SCENARIOS:
    SCENARIOS.register("nearest-upload", summary="test: find a user's uploads from one clean photo")(NearestUpload)


def test_a_scenario_defined_in_a_test_module_runs_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(
        'study: seam\ncampaign: nearest\ndatasets:\n  - {name: sample, root: "bundled:lfw_sample"}\n'
        "protected: {users: [Tony_Blair, Laura_Bush]}\n"
        "grid:\n  scenarios: [nearest-upload, protection]\n  cloaks: [none, noise:low]\n"
        "  surrogates: [dlib-resnet-torch]\n  victims: [dlib-resnet-torch]\n  trackers: [1nn]\nprotocol: {n_boot: 200}\n")
    assert main(["run", "c.yaml"]) == 0
    out = capsys.readouterr().out
    assert "Scenario: nearest-upload" in out and "hidden [95% CI]" in out
    rows = json.loads((tmp_path / "fawkes-eval-out" / "nearest" / "results.json").read_text())
    mine = [r for r in rows if r["cell"]["scenario"] == "nearest-upload"]
    assert len(mine) == 2 and all(r["headline"] == "hidden" and 0 <= r["metrics"]["hidden"] <= 1 for r in mine)
    assert all(sorted(r["outcomes"]) == ["Laura_Bush", "Tony_Blair"] for r in mine)
    # the clean baseline works for any scenario's headline
    noise = next(r for r in mine if r["cell"]["cloak"] == "noise:low")
    assert above_baseline_keys("hidden")[0] in noise["metrics"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("seam")
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(c.data.tags["fe.scenario"] for c in children) == ["nearest-upload"] * 2 + ["protection"] * 2
    assert all("hidden" in c.data.metrics for c in children if c.data.tags["fe.scenario"] == "nearest-upload")
    html = (tmp_path / "fawkes-eval-out" / "nearest" / "report.html").read_text()
    assert 'data-scenario="nearest-upload"' in html and "hidden [95% CI]" in html


# --- rows, baseline, gate ---------------------------------------------------------------------------------------

def test_runner_rows_validate_against_the_shipped_schema(gate_run: CampaignRun) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    results = json.loads((gate_run.results / "results.json").read_text())
    cells = [json.loads(p.read_text()) for p in sorted((gate_run.results / "cells").glob("*.json"))]
    assert len(results) == len(cells) == 5 * 2 * 2
    for data in (*results, *cells):
        jsonschema.validate(data, schema)
        assert data["schema_version"] == 2
        assert sorted(data["outcomes"]) == sorted([EVIL, "Tony_Blair"])
    broken = dict(results[0], metrics={"psr": "high"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_none_measures_the_clean_error_on_the_same_users(gate_run: CampaignRun) -> None:
    """Recomputed here from the parts: the tracker trained on clean photos, asked about the users' clean tests."""
    dataset = load_dataset(gate_run.folder / "data" / "sample")
    split = split_dataset(dataset, 0, 0.7)
    aligner = FaceAligner(cache_dir=gate_run.folder / "cache")
    victim = EXTRACTORS.create("dlib-resnet-torch")
    faces = np.stack([aligner.align(load_photo(r.path), "dlib-150", str(r.path)).crop for r in dataset.records])
    embeddings = victim.embed(faces)
    labels = np.array([r.identity for r in dataset.records])
    train = [i for idx in split.train.values() for i in idx]
    for tracker_name in ("1nn", "logreg"):
        names = sorted(split.train)
        tracker = TRACKERS.create(tracker_name)
        tracker.fit(embeddings[train], np.array([names.index(n) for n in labels[train]]))
        row = gate_run.row(cloak="none", tracker=tracker_name, countermeasure="none")
        for user in (EVIL, "Tony_Blair"):
            test = split.test[user]
            missed = tracker.rank(embeddings[test], 1)[:, 0] != names.index(user)
            assert row.outcomes[user] == [bool(m) for m in missed]
            assert row.per_user[user] == pytest.approx(float(missed.mean()))


def test_noise_is_indistinguishable_from_clean_and_white_box_high_is_not(gate_run: CampaignRun) -> None:
    value, low, high, baseline = above_baseline_keys("psr")
    noise = gate_run.row(cloak="noise:high", cloak_options={}, tracker="1nn", countermeasure="none")
    assert noise.metrics[low] <= 0.0 <= noise.metrics[high]
    assert noise.metrics[baseline] == gate_run.row(cloak="none", tracker="1nn", countermeasure="none").metrics["psr"]
    strong = gate_run.row(cloak="fawkes-v1.0:high", tracker="1nn", countermeasure="none")
    assert strong.metrics[low] > 0.0 and strong.metrics[value] == pytest.approx(
        strong.metrics["psr"] - strong.metrics[baseline])
    table = markdown_rows((gate_run.results / "report.md").read_text())
    verdict = {(r["cloak"], r["cloak_options"], r["tracker"], r["countermeasure"]): r["verdict"] for r in table}
    assert verdict[("noise:high", "{}", "1nn", "none")] == "no protection shown"
    assert verdict[("fawkes-v1.0:high", "{}", "1nn", "none")] == ""


def markdown_rows(report: str) -> list[dict[str, str]]:
    """The first results table of a Markdown report, as dicts keyed by its header."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        values = [v.strip() for v in line.strip("|").split("|")]
        if values[0] == header[0] or len(values) != len(header):
            break
        rows.append(dict(zip(header, values, strict=True)))
    return rows


@pytest.fixture(scope="module")
def gate_rerun(tmp_path_factory: pytest.TempPathFactory) -> CampaignRun:
    """The same campaign again in a fresh folder: its own cache and MLflow store, nothing reused."""
    return run_campaign_file(tmp_path_factory.mktemp("gate-rerun"), GATE_CAMPAIGN)


def test_gate_calibration_identical_rerun_passes(gate_run: CampaignRun, gate_rerun: CampaignRun,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert [r.metrics["psr"] for r in gate_run.rows] == [r.metrics["psr"] for r in gate_rerun.rows]
    assert main(["compare", str(gate_run.results), str(gate_rerun.results)]) == 0
    out = capsys.readouterr().out
    assert "Verdict: PASS: 0 of 20 paired cell(s)" in out and "not the same users" not in out


def test_gate_calibration_high_vs_low_white_box_fails(gate_run: CampaignRun, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    verdicts = tmp_path / "verdicts.json"
    results = str(gate_run.results / "results.json")
    args = ["compare", results, results, "--baseline-filter", "cloak=fawkes-v1.0:high", "--candidate-filter",
            "cloak=fawkes-v1.0:low", "--json", str(verdicts)]
    assert main(args) == 1
    assert "PROTECTION DROP" in capsys.readouterr().out
    saved = json.loads(verdicts.read_text())
    one_nn = [c for c in saved["cells"] if c["identity"]["tracker"] == "1nn" and c["identity"]["countermeasure"] == "none"]
    assert len(one_nn) == 1 and one_nn[0]["paired"] and one_nn[0]["failures"] == [PROTECTION_DROP]
    assert all(c["paired"] for c in saved["cells"])


def test_gate_pairs_queries_and_notes_changed_parameters(gate_run: CampaignRun) -> None:
    plain = [r for r in gate_run.rows if r.cell["cloak"] == "noise:high" and not r.cell["cloak_options"]]
    tuned = [r for r in gate_run.rows if r.cell["cloak"] == "noise:high" and r.cell["cloak_options"]]
    result = compare_rows(plain, tuned, Tolerances())
    assert result.by == ("cloak_options",) and len(result.cells) == 4
    assert all("same cloak name, different parameters" in c.notes for c in result.cells)
    # the paired CI is never wider than the one that treats the two cells as independent
    high = [r for r in gate_run.rows if r.cell["cloak"] == "fawkes-v1.0:high"]
    low = [r for r in gate_run.rows if r.cell["cloak"] == "fawkes-v1.0:low"]
    paired = compare_rows(high, low, Tolerances())
    for cell in paired.cells:
        assert cell.paired and cell.psr[1] <= cell.psr[0] <= cell.psr[2]
        assert cell.psr[0] == pytest.approx(cell.candidate.metrics["psr"] - cell.baseline.metrics["psr"])


def test_mlflow_children_carry_scenario_and_options(gate_run: CampaignRun) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(gate_run.uri)
    children = client.search_runs([client.get_run(gate_run.parent).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{gate_run.parent}'")
    assert len(children) == len(gate_run.rows)
    assert {c.data.tags["fe.scenario"] for c in children} == {"protection"}
    tuned = [c for c in children if "cloak.bisection_steps" in c.data.params]
    assert len(tuned) == 4 and {c.data.params["cloak.bisection_steps"] for c in tuned} == {"12"}


# --- another tool's cloaks in a campaign ------------------------------------------------------------------------

def test_external_cloaks_are_audited_in_a_campaign(tmp_path: Path) -> None:
    """Photos cloaked beforehand with ``fawkes-eval cloak`` (the noise control: cheap), imported as ``external``;
    one protected user's training photo has no copy, and is reported."""
    folder = tmp_path / "external"
    shutil.copytree(DEMO_DATA, folder / "data" / "sample")
    cloaked = folder / "data" / "cloaked"
    env = {**os.environ, "FAWKES_EVAL_CACHE": str(folder / "cache")}
    done = subprocess.run([sys.executable, "-m", "fawkes_eval.cli", "cloak", str(folder / "data" / "sample" / "Tony_Blair"),
                           str(cloaked / "Tony_Blair"), "--method", "noise:high"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    split = split_dataset(load_dataset(folder / "data" / "sample"), 0, 0.7)
    dataset = load_dataset(folder / "data" / "sample")
    first_upload = dataset.records[split.train["Tony_Blair"][0]].path.name
    (cloaked / "Tony_Blair" / first_upload).unlink()
    text = GATE_CAMPAIGN.replace("campaign: gate", "campaign: external").replace(
        'users: ["<img src=x onerror=alert(1)>", Tony_Blair]', "users: [Tony_Blair]").replace(
        "cloaks: [none, fawkes-v1.0:low, fawkes-v1.0:high, noise:high, {name: noise:high, bisection_steps: 12}]",
        'cloaks: [none, {name: external, clean_dir: "data:sample", cloaked_dir: "data:cloaked", tool: noise}]').replace(
        "trackers: [1nn, logreg]", "trackers: [1nn]").replace("countermeasures: [none, jpeg:50]", "countermeasures: [none]")
    run = run_campaign_file(folder, text)
    row = run.row(cloak="external")
    assert row.provenance["photos_without_cloaked_copy"] == [str(folder / "data" / "sample" / "Tony_Blair" / first_upload)]
    params = row.provenance["cloak_params"]
    assert params["tool"] == "noise" and "clean without cloaked" in params["pairing"]
    assert 0.0 < row.metrics["dssim"] < 0.05 and row.metrics["psr_above_baseline_ci_low"] <= 0.0  # noise hides nobody
    assert row.outcomes.keys() == {"Tony_Blair"}


# --- two processes, one campaign --------------------------------------------------------------------------------

def test_two_concurrent_runs_compute_each_cell_once(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    shutil.copytree(DEMO_DATA, tmp_path / "data" / "sample")
    (tmp_path / "c.yaml").write_text(
        'study: twice\ncampaign: twice\nroots: {data: data}\ndatasets:\n  - {name: sample, root: "data:sample"}\n'
        "protected: {users: [Tony_Blair]}\ngrid:\n  cloaks: [none, noise:low, noise:mid, noise:high]\n"
        "  surrogates: [dlib-resnet-torch]\n  victims: [dlib-resnet-torch]\n  trackers: [1nn, logreg]\n"
        "protocol: {n_boot: 200}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "FAWKES_EVAL_CACHE": str(tmp_path / "cache")}
    processes = [subprocess.Popen([sys.executable, "-m", "fawkes_eval.cli", "run", "c.yaml"], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=1200) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [o[1][-2000:] for o in outputs]
    ran = [int(m.group(1)) for out, _ in outputs for m in [re.search(r"twice: 8 cells: (\d+) run", out)] if m]
    assert len(ran) == 2 and sum(ran) == 8, [o[0][-1500:] for o in outputs]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("twice")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 8
    assert len({c.data.tags["fe.config_hash"] for c in children}) == 8
