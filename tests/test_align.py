from __future__ import annotations

from pathlib import Path

import dlib
import face_recognition_models as frm
import numpy as np
import pytest

from fawkes_eval.align import FaceAligner, NoFaceError, load_photo, warp_crop_to_photo
from fawkes_eval.data import Dataset


def test_dlib_template_reproduces_dlib_chip(demo_dataset: Dataset, aligner: FaceAligner) -> None:
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    for record in demo_dataset.records[::25]:
        photo = load_photo(record.path)
        ours = aligner.align(photo, "dlib-150", str(record.path)).crop
        boxes = detector(photo, 1)
        cy, cx = (photo.shape[0] - 1) / 2, (photo.shape[1] - 1) / 2
        box = min(boxes, key=lambda b: (b.center().x - cx) ** 2 + (b.center().y - cy) ** 2)
        theirs = dlib.get_face_chip(photo, predictor(photo, box), size=150, padding=0.25)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize("template,size", [("dlib-150", 150), ("arcface-112", 112), ("arcface-224", 224)])
def test_templates_give_their_size(demo_dataset: Dataset, aligner: FaceAligner, template: str, size: int) -> None:
    face = aligner.align(load_photo(demo_dataset.records[0].path), template)
    assert face.crop.shape == (size, size, 3) and face.crop.dtype == np.uint8


def test_no_face_is_named(tmp_path: Path, aligner: FaceAligner) -> None:
    blank = np.full((120, 120, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="blank.png: no face"):
        aligner.align(blank, "dlib-150", "blank.png")


def test_cache_roundtrip_and_corruption(tmp_path: Path, demo_dataset: Dataset) -> None:
    photo = load_photo(demo_dataset.records[1].path)
    first = FaceAligner(cache_dir=tmp_path).align(photo, "arcface-112")
    entries = list(tmp_path.rglob("*.npz"))
    assert len(entries) == 1
    again = FaceAligner(cache_dir=tmp_path).align(photo, "arcface-112")
    assert np.array_equal(first.crop, again.crop) and np.array_equal(first.matrix, again.matrix)
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated: must be recomputed, not trusted
    recomputed = FaceAligner(cache_dir=tmp_path).align(photo, "arcface-112")
    assert np.array_equal(first.crop, recomputed.crop)


def test_crop_change_lands_on_the_face_only(demo_dataset: Dataset, aligner: FaceAligner) -> None:
    photo = load_photo(demo_dataset.records[2].path)
    face = aligner.align(photo, "dlib-150")
    delta = np.full((150, 150, 3), 4.0, np.float32)
    back = warp_crop_to_photo(delta, face.matrix, photo.shape)
    assert back.shape == photo.shape
    assert back[0, 0].tolist() == [0.0, 0.0, 0.0]  # corner is outside the chip
    centre = back[photo.shape[0] // 2, photo.shape[1] // 2]
    assert np.allclose(centre, 4.0)
