"""DeepFace as a victim, offline: dlib's real weights placed where DeepFace looks, real LFW faces.

Each test points ``$DEEPFACE_HOME`` at a temporary folder: one with the dlib files copied in, one left empty.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor
from recognizers import deepface_adapter
from recognizers.deepface_adapter import DeepFaceExtractor, DeepFaceWeightsMissing, expected_weight_file
from recognizers.dlib_resnet import MODEL_SHA256, DlibResNet

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]


def loo_1nn_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN by cosine similarity."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return float(np.mean(labels[sims.argmax(1)] == labels))


@pytest.fixture(scope="module")
def dlib_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DEEPFACE_HOME holding dlib's recognition model and 5-point predictor, as a user would place them."""
    import face_recognition_models

    home = tmp_path_factory.mktemp("deepface-home")
    weights = home / ".deepface" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(face_recognition_models.face_recognition_model_location(), weights)
    shutil.copy(face_recognition_models.pose_predictor_five_point_model_location(), weights)
    return home


@pytest.fixture
def in_home(dlib_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPFACE_HOME", str(dlib_home))
    return dlib_home


@pytest.fixture(scope="module")
def dlib_adapter(dlib_home: Path) -> DeepFaceExtractor:
    with pytest.MonkeyPatch.context() as patch:  # the home is read while building; embedding needs it no more
        patch.setenv("DEEPFACE_HOME", str(dlib_home))
        return DeepFaceExtractor("Dlib")


def test_weight_table_matches_installed_deepface() -> None:
    from deepface.modules import modeling

    for model_name, per_engine in deepface_adapter.WEIGHT_FILES.items():
        sources = modeling.AVAILABLE_MODELS["facial_recognition"][model_name]
        for engine, file_name in per_engine.items():
            module = sources[engine].rpartition(".")[0]
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin is not None, module
            text = Path(spec.origin).read_text()
            assert Path(file_name).name in text, f"{model_name}/{engine}: {file_name} not in {spec.origin}"
    known = set(modeling.AVAILABLE_MODELS["facial_recognition"])
    assert known == set(deepface_adapter.WEIGHT_FILES), "deepface's model list changed: update WEIGHT_FILES"


def test_missing_weights_fail_at_once_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    engine = deepface_adapter._resolve_engine(None)
    expected = expected_weight_file("ArcFace", engine)
    assert expected is not None
    with pytest.raises(DeepFaceWeightsMissing) as caught:
        DeepFaceExtractor("ArcFace")
    message = str(caught.value)
    assert expected in message and str(tmp_path / ".deepface" / "weights") in message
    # It failed before DeepFace built (or imported) the network, and wrote nothing: no download began.
    assert f"deepface.models.facial_recognition.{'tf' if engine == 'tensorflow' else engine}.ArcFace" not in sys.modules
    assert list(tmp_path.iterdir()) == []


def test_files_the_table_does_not_know_are_refused_too(in_home: Path) -> None:
    """The downloader guard: DeepFace's opencv detector wants a cascade file that is not here, so it names it."""
    from deepface.commons import weight_utils

    original = weight_utils.download_weights_if_necessary
    with pytest.raises(DeepFaceWeightsMissing, match=r"haarcascade_frontalface_default\.xml"):
        DeepFaceExtractor("Dlib", detector_backend="opencv")
    assert weight_utils.download_weights_if_necessary is original  # the guard is undone on the way out


def test_dlib_adapter_declares_what_it_runs(dlib_adapter: DeepFaceExtractor) -> None:
    import deepface

    info = dlib_adapter.info
    assert isinstance(dlib_adapter, FeatureExtractor)
    assert (info.name, info.template, info.input_size, info.embedding_dim) == ("deepface-dlib", "dlib-150", 150, 128)
    assert info.weight_sha256 == {deepface_adapter.WEIGHT_FILES["Dlib"]["any"]: MODEL_SHA256}
    assert f"deepface {deepface.__version__}" in info.source and info.license.startswith("CC0")
    assert not info.differentiable


def test_registered_by_deepface_model_name(in_home: Path) -> None:
    load_rooms()
    assert "deepface:Dlib" in EXTRACTORS.names() and "deepface:ArcFace" in EXTRACTORS.names()
    assert EXTRACTORS.create("deepface:Dlib").info.name == "deepface-dlib"


def test_dlib_matches_dlib_itself(demo_dataset: Dataset, aligned: Aligned, dlib_adapter: DeepFaceExtractor) -> None:
    faces, _ = aligned(demo_dataset, "dlib-150")
    faces = faces[::10]  # one face per identity
    ours, reference = dlib_adapter.embed(faces), DlibResNet().embed(faces)
    assert ours.shape == (len(faces), 128) and ours.dtype == np.float32
    cosine = np.sum(ours * reference, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    # DeepFace scales crops to 0..1 and back to uint8 before dlib sees them: measured exact on LFW chips.
    assert cosine.min() >= 0.99999
    np.testing.assert_array_equal(dlib_adapter.embed(faces[:1]), ours[:1])  # a batch of one unwraps the same


def test_deepface_detector_inside_the_crop(in_home: Path, demo_dataset: Dataset, aligned: Aligned,
                                           dlib_adapter: DeepFaceExtractor) -> None:
    faces, _ = aligned(demo_dataset, "dlib-150")
    faces = faces[::20]
    redetected = DeepFaceExtractor("Dlib", detector_backend="dlib")
    assert redetected.info.name == "deepface-dlib-dlib"
    assert set(redetected.info.weight_sha256) == {"dlib_face_recognition_resnet_model_v1.dat",
                                                  "shape_predictor_5_face_landmarks.dat"}
    a, b = redetected.embed(faces), dlib_adapter.embed(faces)
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9  # same person, re-detected and re-cropped by DeepFace: close, not equal
    assert not np.allclose(a, b)


@pytest.mark.lfw
@pytest.mark.slow
def test_dlib_identifies_lfw_fixture(lfw_fixture: Dataset, aligned: Aligned, dlib_adapter: DeepFaceExtractor) -> None:
    faces, labels = aligned(lfw_fixture, dlib_adapter.info.template)
    embeddings = dlib_adapter.embed(faces)
    assert loo_1nn_accuracy(embeddings, labels) >= 0.95
