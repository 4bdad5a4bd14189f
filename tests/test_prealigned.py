"""Pre-aligned datasets: photos that are already crops on a template are used as they are, nothing detected, no
photo lost; crops for other templates are derived by the transform between the templates, padding recorded."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fawkes_eval.align import FaceAligner, NotACropError, load_photo, template_transform
from fawkes_eval.cli import main
from fawkes_eval.data import Dataset, load_dataset
from fawkes_eval.registry import EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms


@pytest.fixture(scope="module")
def crops_dir(lfw_fixture: Dataset, aligner: FaceAligner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pre-aligned copy of LFW fixture_8x6: the arcface-112 crop of each photo, as lossless PNG files."""
    root = tmp_path_factory.mktemp("prealigned")
    for record in lfw_fixture.records:
        crop = aligner.align(load_photo(record.path), "arcface-112", str(record.path)).crop
        (root / record.identity).mkdir(exist_ok=True)
        Image.fromarray(crop).save(root / record.identity / f"{record.path.stem}.png")
    return root


def _accuracy(faces: np.ndarray, labels: list[str], model: str) -> float:
    from scenarios.identification import kfold_identification

    load_rooms()
    embeddings = EXTRACTORS.create(model).embed(faces)
    return kfold_identification(embeddings, labels, lambda: TRACKERS.create("1nn"), folds=3, seed=0).accuracy


@pytest.mark.lfw
def test_prealigned_crops_lose_no_photo_and_keep_accuracy(crops_dir: Path, lfw_fixture: Dataset,
                                                          aligner: FaceAligner, aligned: object) -> None:
    prealigned = load_dataset(crops_dir)
    assert len(prealigned.records) == len(lfw_fixture.records) == 48
    crops_aligner = FaceAligner(aligned="arcface-112")
    faces = [crops_aligner.align(load_photo(r.path), "arcface-112", str(r.path)) for r in prealigned.records]
    assert all(f.crop.shape == (112, 112, 3) and f.padded == 0.0 for f in faces)  # used as they are
    labels = [r.identity for r in prealigned.records]
    from_photos = np.stack([aligner.align(load_photo(r.path), "arcface-112").crop for r in lfw_fixture.records])
    photo_labels = [r.identity for r in lfw_fixture.records]
    ours, theirs = _accuracy(np.stack([f.crop for f in faces]), labels, "mobileface"), \
        _accuracy(from_photos, photo_labels, "mobileface")
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    # Another template derived from the crops: dlib's chip is wider than the ArcFace crop, so part of it is padded.
    chips = np.stack([crops_aligner.align(load_photo(r.path), "dlib-150").crop for r in prealigned.records])
    padded = crops_aligner.provenance()["padded"]
    assert isinstance(padded, dict) and padded["arcface-112"] == 0.0 and 0.0 < padded["dlib-150"] < 0.3
    assert _accuracy(chips, labels, "dlib-resnet-torch") >= 0.9


def test_template_transforms_compose_and_invert() -> None:
    up = template_transform("arcface-112", "arcface-224")
    np.testing.assert_allclose(up, [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], atol=1e-9)  # as the aligner defines 224
    there, back = template_transform("arcface-112", "dlib-150"), template_transform("dlib-150", "arcface-112")
    full = np.vstack([there, [0, 0, 1]]) @ np.vstack([back, [0, 0, 1]])
    np.testing.assert_allclose(full, np.eye(3), atol=1e-9)
    # a 224 px crop on arcface-112 is the same geometry at twice the resolution
    np.testing.assert_allclose(template_transform("arcface-112", "arcface-112", source_size=224)[:, :2],
                               np.eye(2) / 2, atol=1e-9)


def test_non_square_photo_is_refused_by_name(demo_dataset: Dataset) -> None:
    photo = load_photo(demo_dataset.records[0].path)[:, :200]
    with pytest.raises(NotACropError, match=r"wide.jpg: 200x250 is not a square crop.*arcface-112"):
        FaceAligner(aligned="arcface-112").align(photo, "arcface-112", "wide.jpg")
    with pytest.raises(KeyError, match="unknown pre-aligned template 'arcface-96'"):
        FaceAligner(aligned="arcface-96")


@pytest.mark.lfw
def test_zoo_check_takes_aligned(crops_dir: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["zoo", "check", "--data", str(crops_dir), "--models", "mobileface", "--folds", "3",
                       "--aligned", "arcface-112"])
    text = out.getvalue()
    assert status == 0 and "pre-aligned arcface-112 crops" in text and "skipped" not in text
    assert "| mobileface | 48 |" in text


@pytest.mark.lfw
@pytest.mark.slow
def test_a_campaign_on_prealigned_crops_loses_no_photo(crops_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``aligned: arcface-112`` on a campaign dataset: every crop is used (none detected, none left out), the
    dlib chip of the dlib victim is derived from the crop, and the row says how its faces were found."""
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "c.yaml").write_text(
        f'study: prealigned\ncampaign: crops\nroots: {{crops: "{crops_dir}"}}\n'
        'datasets:\n  - {name: crops, root: "crops:.", aligned: arcface-112}\nprotected: {count: 1}\n'
        "grid:\n  cloaks: [none]\n  surrogates: [dlib-resnet-torch]\n  victims: [mobileface, dlib-resnet-torch]\n"
        "  trackers: [1nn]\nprotocol: {n_boot: 200}\n")
    assert main(["run", "c.yaml"]) == 0
    rows = json.loads((tmp_path / "fawkes-eval-out" / "crops" / "results.json").read_text())
    assert len(rows) == 2 and all(r["provenance"]["n_images"] == 48 for r in rows)
    assert json.loads((tmp_path / "fawkes-eval-out" / "crops" / "errors.json").read_text()) == []
    assert all(r["cell"]["alignment"] == "aligned:arcface-112" for r in rows)
    assert all(r["provenance"]["alignment"]["aligned"] == "arcface-112" for r in rows)
    # both victims still recognise the unprotected identities from the crops
    assert all(r["metrics"]["others_acc"] >= 0.9 for r in rows)
    both = tmp_path / "both.yaml"
    both.write_text((tmp_path / "c.yaml").read_text().replace("aligned: arcface-112", "aligned: arcface-112, "
                                                                                        "detector: scrfd"))
    assert main(["validate", str(both)]) == 2
