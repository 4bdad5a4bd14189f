"""Photos written by the ``cloak`` verb protect as the campaigns' own cloaks do (issue 17).

Real LFW photos, real dlib-resnet-torch surrogate, fawkes-v1.0:high: the verb's files are read back from disk and
audited in a campaign as ``external`` cloaks (white-box victim, 1-NN), beside the campaign path's own cloaks of the
same users and photos and the clean baseline, all three cells of one ``fawkes-eval run``; Fawkes v1.0's square-crop
merge is still there, and the feature change after re-alignment that its report gives is lower.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from attacks.full_photo import FullPhotoConfig, cloak_folder, summarise
from fawkes_eval.align import FaceAligner
from fawkes_eval.data import Split, load_dataset, split_dataset
from fawkes_eval.registry import CLOAKS, EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import CloakGenerator, DifferentiableExtractor

load_rooms()
IDENTITIES, PHOTOS = 8, 10  # 7 training / 3 test photos per identity (fawkes-v1.0:high is ~30 s a face on one core)
PROTECTED = ["Alvaro_Uribe", "Andre_Agassi"]
SQUARE_PHOTOS = 4  # photos cloaked again with the square merge (the slow part is the optimiser)
pytestmark = [pytest.mark.heavy, pytest.mark.slow, pytest.mark.lfw]


@dataclass(frozen=True)
class Setup:
    work: Path
    clean_dir: Path  # the protected users' training photos, as the user has them
    split: Split
    surrogate: DifferentiableExtractor
    generator: CloakGenerator


@pytest.fixture(scope="module")
def setup(lfw_root: Path, aligner: FaceAligner, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    by_identity: dict[str, list[str]] = {}
    for line in (lfw_root / "subsets" / "ge20_cap50.txt").read_text().split():
        by_identity.setdefault(line.split("/")[0], []).append(line)
    chosen = sorted(by_identity)[:IDENTITIES]
    assert set(PROTECTED) <= set(chosen)
    work = tmp_path_factory.mktemp("protect")
    subset = work / "subset.txt"
    subset.write_text("\n".join(p for name in chosen for p in by_identity[name][:PHOTOS]) + "\n")
    dataset = load_dataset(lfw_root / "images", subset)
    split = split_dataset(dataset, seed=0)
    clean_dir = work / "clean"
    for user in PROTECTED:
        for i in split.train[user]:
            target = clean_dir / dataset.records[i].path.relative_to(lfw_root / "images")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dataset.records[i].path, target)
    surrogate = EXTRACTORS.create("dlib-resnet-torch")
    assert isinstance(surrogate, DifferentiableExtractor)
    generator = CLOAKS.create("fawkes-v1.0:high", surrogates=[surrogate])
    return Setup(work, clean_dir, split, surrogate, generator)


def _campaign_psr(setup: Setup, lfw_root: Path, cloaked_dir: Path) -> dict[str, float]:
    """White-box PSR (the surrogate is the victim), 1-NN, of the clean baseline, the campaign path's cloak and the
    verb's files imported as ``external``: one campaign, the same users and queries."""
    import json
    import os

    from fawkes_eval.cli import main

    work = setup.work
    (work / "c.yaml").write_text(
        f'study: verb-vs-campaign\ncampaign: verb\nroots: {{lfw: "{lfw_root / "images"}", work: "{work}"}}\n'
        'datasets:\n  - {name: lfw, root: "lfw:.", subset: "work:subset.txt"}\n'
        f"protected: {{users: [{', '.join(PROTECTED)}]}}\n"
        "grid:\n  cloaks: [none, fawkes-v1.0:high, "
        f'{{name: external, clean_dir: "work:{setup.clean_dir.name}", cloaked_dir: "work:{cloaked_dir.name}"}}]\n'
        "  surrogates: [dlib-resnet-torch]\n  victims: [dlib-resnet-torch]\n  trackers: [1nn]\nprotocol: {n_boot: 200}\n")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "FAWKES_EVAL_CACHE": str(work / "cache")}
    before = {k: os.environ.get(k) for k in env}
    cwd = Path.cwd()
    try:
        os.environ.update(env)
        os.chdir(work)
        assert main(["run", "c.yaml"]) == 0
    finally:
        os.chdir(cwd)
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    rows = json.loads((work / "fawkes-eval-out" / "verb" / "results.json").read_text())
    assert all(r["metrics"]["others_acc"] >= 0.9 for r in rows), "the tracker must work on everyone else"
    external = next(r for r in rows if r["cell"]["cloak"] == "external")
    assert external["provenance"]["photos_without_cloaked_copy"] == []
    return {r["cell"]["cloak"]: r["metrics"]["psr"] for r in rows}


def test_verb_photos_read_back_protect_like_the_campaign_path(setup: Setup, aligner: FaceAligner, lfw_root: Path) -> None:
    generator, surrogate, work, clean_dir = setup.generator, setup.surrogate, setup.work, setup.clean_dir
    out = work / "verb"
    results = cloak_folder(generator, clean_dir, out, FullPhotoConfig(output_format="png"), aligner, seed=0,
                           checkers=[surrogate])  # fmt: skip
    assert all(r.status == "cloaked" and r.merge == "aligned" for r in results)
    psr = _campaign_psr(setup, lfw_root, out)
    clean_psr, verb_psr, campaign_psr = psr["none"], psr["external"], psr["fawkes-v1.0:high"]
    assert verb_psr >= 0.8 and abs(verb_psr - campaign_psr) <= 0.1, (verb_psr, campaign_psr)
    assert verb_psr - clean_psr >= 0.5, (clean_psr, verb_psr)

    # the square merge is still there: same generator and photos, a smaller change once a recognizer re-aligns
    few = work / "few"
    for r in results[:SQUARE_PHOTOS]:
        (few / r.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clean_dir / r.path, few / r.path)
    square = cloak_folder(generator, few, work / "square", FullPhotoConfig(merge="fawkes-square", output_format="png"),
                          aligner, seed=0, checkers=[surrogate])  # fmt: skip
    assert [r.merge for r in square] == ["fawkes-square"] * SQUARE_PHOTOS
    aligned_change = summarise(results[:SQUARE_PHOTOS]).median_change["dlib-resnet-torch"]
    square_change = summarise(square).median_change["dlib-resnet-torch"]
    assert square_change < aligned_change, (square_change, aligned_change)
    every = summarise(results).median_change["dlib-resnet-torch"]
    print(f"PSR clean {clean_psr:.2f}, verb {verb_psr:.2f}, campaign path {campaign_psr:.2f}; median feature change "
          f"on {SQUARE_PHOTOS} photos: aligned {aligned_change:.2f}, fawkes-square {square_change:.2f}; "
          f"all {len(results)}: {every:.2f}")
