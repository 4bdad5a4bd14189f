"""The verification, search and linkability scenarios: their ranking arithmetic on known numbers, and one real
campaign on the bundled sample (dlib's ResNet in torch, the clean baseline and a white-box Fawkes cloak) shared by
the tests that read it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DEMO_DATA, EVIL, CampaignRun, run_campaign_file

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.baselines import above_baseline_keys
from fawkes_eval.campaign import CampaignError, load_campaign
from fawkes_eval.data import load_dataset, split_dataset
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from scenarios.galleries import average_precision, hit_at, relevant_ranks, unit
from scenarios.verification import draw_pairs

pytestmark = pytest.mark.heavy

load_rooms()

PROTECTED = [EVIL, "Tony_Blair"]  # the gate campaign's users: its cloaks are reused
CLOAKS = ["none", "fawkes-v1.0:high"]
VICTIMS = ["dlib-resnet-torch"]

CAMPAIGN = """\
study: gallery-tests
campaign: galleries
datasets:
  - {name: sample, root: "data:sample"}
protected: {users: ["<img src=x onerror=alert(1)>", Tony_Blair]}
grid:
  scenarios:
    - verification
    - {name: verification, pairs: "data:pairs.txt", fars: [0.02], folds: 2, pairs_per_fold: 100}
    - {name: verification, pairs: "data:pairs.txt", pairs_images: "data:sample", fars: [0.02], folds: 2, pairs_per_fold: 100}
    - search
    - {name: search, distractors: {root: "data:distractors"}}
    - linkability
  cloaks: [none, fawkes-v1.0:high]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet-torch]
  trackers: [1nn]
protocol: {n_boot: 200}
"""


# --- arithmetic ----------------------------------------------------------------------------------------------------

def test_ranks_ties_go_to_the_searcher_and_average_precision() -> None:
    gallery = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]))
    query = unit(np.array([[1.0, 0.0]]))
    # match: item 2, tied with the non-match item 0: the non-match ranks first
    assert relevant_ranks(query, gallery, [np.array([2])])[0].tolist() == [2]
    # matches 0 and 2 tie with each other (neither ranks the other down), then 3
    ranks = relevant_ranks(query, gallery, [np.array([0, 2, 3])])[0]
    assert ranks.tolist() == [1, 1, 3]
    # excluding item 0 (the query itself) lifts item 2 to the top
    assert relevant_ranks(query, gallery, [np.array([2])], exclude=[0])[0].tolist() == [1]
    r = [np.array([1, 3]), np.array([2]), np.array([], int)]
    assert hit_at(r, 1).tolist() == [True, False, False] and hit_at(r, 2).tolist() == [True, True, False]
    assert average_precision(r) == pytest.approx([(1 / 1 + 2 / 3) / 2, 1 / 2, 0.0])


def test_drawn_pairs_keep_enrolled_identities_per_fold() -> None:
    identities = [f"id{i // 6}" for i in range(60)]  # 10 identities x 6 photos
    pairs = draw_pairs(identities, seed=3, n_folds=5, per_fold=20)
    assert pairs == draw_pairs(identities, seed=3, n_folds=5, per_fold=20)
    assert pairs != draw_pairs(identities, seed=4, n_folds=5, per_fold=20)
    for fold in range(5):
        same = [p for p in pairs if p.fold == fold and p.same]
        other = [p for p in pairs if p.fold == fold and not p.same]
        assert len(same) == 20 and len(other) == 20  # 2 identities x 15 same pairs = 30 >= 20
        assert all(identities[p.first] == identities[p.second] for p in same)
        assert all(identities[p.first] != identities[p.second] for p in other)
        enrolled = {identities[p.first] for p in same}
        assert len(enrolled) <= 2
        assert all(identities[p.first] in enrolled or identities[p.second] in enrolled for p in other)
        assert len({(p.first, p.second) for p in other}) == 20


def test_a_nested_option_path_is_confined_to_its_root(tmp_path: Path) -> None:
    (tmp_path / "data" / "sample").mkdir(parents=True)
    (tmp_path / "data" / "pairs.txt").write_text("")
    (tmp_path / "c.yaml").write_text(CAMPAIGN.replace("datasets:", "roots: {data: data}\ndatasets:").replace(
        '"data:distractors"', '"data:../.."'))
    with pytest.raises(CampaignError, match=r"c.yaml:\d+: grid.scenarios\[\d\].distractors.root: .*outside its root"):
        load_campaign(tmp_path / "c.yaml")


# --- one real campaign -----------------------------------------------------------------------------------------

def _pairs_file(sample: Path, path: Path) -> None:
    """An LFW-format pairs file over the sample's photos: 2 folds of 100 same and 100 different pairs. Laura_Bush is
    renamed in the campaign's copy of the sample, so her pairs are left out (and counted)."""
    rng = np.random.default_rng(0)
    people = sorted(p.name for p in sample.iterdir() if p.is_dir())
    lines = ["2 100"]
    for fold in range(2):
        mine = people[fold::2]
        for _ in range(100):
            name = mine[rng.integers(len(mine))]
            i, j = rng.choice(10, 2, replace=False) + 1
            lines.append(f"{name} {i} {j}")
        for _ in range(100):
            a, b = rng.choice(len(people), 2, replace=False)
            lines.append(f"{people[a]} {rng.integers(10) + 1} {people[b]} {rng.integers(10) + 1}")
    path.write_text("\n".join(lines) + "\n")


def row_with(run: CampaignRun, option: str | None, **cell: object) -> Any:
    """The one row of these cell values whose scenario options name ``option`` (None: no options)."""
    found = [r for r in run.rows if all(r.cell.get(k) == v for k, v in cell.items())
             and (option in r.cell["scenario_options"] if option else not r.cell["scenario_options"])]
    assert len(found) == 1, f"{len(found)} rows match {cell} with option {option}"
    return found[0]


@pytest.fixture(scope="module")
def galleries(tmp_path_factory: pytest.TempPathFactory, gate_run: CampaignRun) -> CampaignRun:
    """The campaign, with the gate campaign's caches copied in: it cloaked the same users' uploads of the same sample
    with fawkes-v1.0:high through the same surrogate and seed, so nothing is cloaked again (the scenarios reach the
    cloak through the same cloaking run as protection)."""
    folder = tmp_path_factory.mktemp("galleries")
    shutil.copytree(gate_run.folder / "cache", folder / "cache")
    data = folder / "data"
    data.mkdir()
    _pairs_file(DEMO_DATA, data / "pairs.txt")
    # distractors: two other people under new names (same pixels: the embedding cache serves them), and a folder
    # named like a protected user, which must be left out
    for src, name in (("Hugo_Chavez", "Distractor_One"), ("Winona_Ryder", "Distractor_Two"), ("Tony_Blair", "Tony_Blair")):
        shutil.copytree(DEMO_DATA / src, data / "distractors" / name)
    return run_campaign_file(folder, CAMPAIGN)


@pytest.mark.slow
def test_every_scenario_runs_for_every_cloak_and_lands_in_mlflow(galleries: CampaignRun) -> None:
    from mlflow.tracking import MlflowClient

    rows = galleries.rows
    assert len(rows) == 6 * len(CLOAKS) * len(VICTIMS)
    client = MlflowClient(galleries.uri)
    children = client.search_runs([client.get_run(galleries.parent).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{galleries.parent}'")
    tags = sorted(c.data.tags["fe.scenario"] for c in children)
    assert tags == sorted(["verification"] * 6 + ["search"] * 4 + ["linkability"] * 2)
    heads = {"verification": "dodging", "search": "a_protection_at_1", "linkability": "unlinkability"}
    for c in children:
        assert heads[c.data.tags["fe.scenario"]] in c.data.metrics
    for row in rows:
        assert row.headline == heads[row.cell["scenario"]]
        assert sorted(row.outcomes) == sorted(PROTECTED)
        figures = row.provenance["figures"]
        assert figures and all(f["kind"] in ("curve", "histogram") for f in figures)
    # linkability is reported for every cloak and victim, with its similarity histogram
    link = [r for r in rows if r.cell["scenario"] == "linkability"]
    assert sorted((r.cell["cloak"], r.cell["victim"]) for r in link) == sorted(
        (c, v) for c in CLOAKS for v in VICTIMS)
    for r in link:
        hist = r.provenance["figures"][0]
        assert len(hist["edges"]) == 41 and sum(hist["series"]["same user (uploads)"]) == r.provenance["n_same_user_pairs"]
    html = (galleries.results / "report.html").read_text()
    assert all(f'data-scenario="{s}"' in html for s in heads)


@pytest.mark.slow
def test_search_with_none_is_the_clean_miss_rate(galleries: CampaignRun) -> None:
    """Recomputed from the parts: each clean test photo's nearest photo among the user's uploads and every other
    identity's photos; a miss when it is not the user's."""
    sample = galleries.folder / "data" / "sample"
    dataset = load_dataset(sample)
    split = split_dataset(dataset, 0, 0.7)
    aligner = FaceAligner(cache_dir=galleries.folder / "cache")
    victim = EXTRACTORS.create("dlib-resnet-torch")
    faces = np.stack([aligner.align(load_photo(r.path), "dlib-150", str(r.path)).crop for r in dataset.records])
    x = victim.embed(faces)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = np.array([r.identity for r in dataset.records])
    row: Any = row_with(galleries, None, scenario="search", cloak="none", victim="dlib-resnet-torch")
    for user in PROTECTED:
        gallery = np.array(split.train[user] + [i for i in range(len(names)) if names[i] != user])
        missed = [names[gallery[np.argmax(x[gallery] @ x[q])]] != user for q in split.test[user]]
        assert row.outcomes[user] == missed
        assert row.per_user[user] == pytest.approx(np.mean(missed))
    assert row.metrics["a_protection_at_1"] == pytest.approx(np.mean([np.mean(row.outcomes[u]) for u in PROTECTED]))


@pytest.mark.slow
def test_white_box_fawkes_raises_search_protection_in_direction_a(galleries: CampaignRun) -> None:
    _, low, _, baseline = above_baseline_keys("a_protection_at_1")
    for option in (None, "distractors"):
        strong: Any = row_with(galleries, option, scenario="search", cloak="fawkes-v1.0:high", victim="dlib-resnet-torch")
        assert strong.metrics[low] > 0.0, strong.metrics
        none: Any = row_with(galleries, option, scenario="search", cloak="none", victim="dlib-resnet-torch")
        assert strong.metrics[baseline] == none.metrics["a_protection_at_1"]
        assert 0.0 <= strong.metrics["b_protection_at_1"] <= 1.0 and 0.0 <= strong.metrics["a_map"] <= 1.0
    extra: Any = row_with(galleries, "distractors", scenario="search", cloak="none", victim="dlib-resnet-torch")
    plain: Any = row_with(galleries, None, scenario="search", cloak="none", victim="dlib-resnet-torch")
    assert extra.provenance["distractors_files"] == 20 and extra.provenance["distractors_excluded_identities"] == 1
    assert extra.metrics["gallery"] == plain.metrics["gallery"] + 20 - extra.provenance["distractors_without_face"]
    curve = extra.provenance["figures"][0]
    assert [len(s["y"]) for s in curve["series"].values()] == [10, 10]
    assert all(np.all(np.diff(s["y"]) <= 1e-12) for s in curve["series"].values())  # protection@k falls with k


@pytest.mark.slow
def test_clean_linkability_is_high_on_dlib(galleries: CampaignRun) -> None:
    for victim in VICTIMS:
        row = galleries.row(scenario="linkability", cloak="none", victim=victim)
        assert row.metrics["recall_at_1"] >= 0.9, row.metrics
        assert row.metrics["unlinkability"] == pytest.approx(1.0 - row.metrics["recall_at_1"])
        assert row.metrics["same_user_sim_q50"] > row.metrics["impostor_sim_q90"]


@pytest.mark.slow
def test_verification_calibrates_on_clean_pairs_and_measures_dodging(galleries: CampaignRun) -> None:
    drawn: Any = row_with(galleries, None, scenario="verification", cloak="none", victim="dlib-resnet-torch")
    m = drawn.metrics
    assert m["tar_1e-02_ci_low"] <= m["tar_1e-02"] <= m["tar_1e-02_ci_high"] and m["tar_1e-02"] >= 0.8
    assert m["auc"] >= 0.95 and m["auc_ci_low"] <= m["auc"] and m["eer"] <= 0.1
    assert m["held_out_far_1e-03"] <= 0.01 and "dodging_1e-03" in m
    # the none cloak's dodging is the clean false-reject rate of the same genuine pairs
    assert m["dodging"] == pytest.approx(m["clean_reject_1e-02"])
    assert all(len(o) == 7 * 3 for o in drawn.outcomes.values())
    roc = drawn.provenance["figures"][0]
    assert roc["x_log"] and len(roc["series"]["clean pairs"]["x"]) <= 200 and "clean, FAR 1e-02" in roc["marks"]
    files: list[Any] = [r for r in galleries.rows if r.cell["scenario"] == "verification" and r.cell["cloak"] == "none"
                        and "pairs" in r.cell["scenario_options"]]
    from_file = next(r for r in files if "pairs_images" not in r.cell["scenario_options"])
    from_folder = next(r for r in files if "pairs_images" in r.cell["scenario_options"])
    # the pairs' photos read from a folder or matched in the dataset: the same photos, the same numbers
    assert from_folder.metrics["tar_2e-02"] == from_file.metrics["tar_2e-02"]
    assert from_folder.provenance["n_pairs"] == from_file.provenance["n_pairs"]
    assert from_file.provenance["n_pairs"] + from_file.provenance["n_skipped_pairs"] == 400
    assert from_file.provenance["n_skipped_pairs"] > 0  # Laura_Bush's
    assert from_file.provenance["n_folds"] == 2 and "tar_2e-02" in from_file.metrics and "tar_1e-03" not in from_file.metrics
    strong: Any = row_with(galleries, None, scenario="verification", cloak="fawkes-v1.0:high", victim="dlib-resnet-torch")
    assert strong.metrics["dodging"] > strong.metrics["clean_reject_1e-02"]
    none: Any = row_with(galleries, None, scenario="verification", cloak="none", victim="dlib-resnet-torch")
    assert strong.metrics["tar_1e-02"] == none.metrics["tar_1e-02"]
