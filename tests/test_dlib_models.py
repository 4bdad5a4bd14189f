"""dlib's ResNet-29 two ways: dlib itself and our PyTorch module on the face-api port's weights.

Real weights and real photos. dlib-bin runs ~170 ms per face on 2 CPU cores (the port ~5 ms), so the default run asks
dlib for a few dozen faces and the whole-dataset comparisons are marked slow.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fawkes_eval.data import Dataset, sha256_file
from fawkes_eval.types import DifferentiableExtractor, FeatureExtractor
from recognizers import dlib_resnet
from recognizers.dlib_resnet import DlibResNet
from recognizers.dlib_resnet_torch import BINARY, MANIFEST, DlibResNetTorch
from recognizers.weights import WEIGHTS_DIR, WeightsError

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
Chips = tuple[np.ndarray, np.ndarray]  # uint8 (N, 150, 150, 3) dlib chips, identity labels (N,)


@pytest.fixture(scope="module")
def native() -> DlibResNet:
    return DlibResNet()


@pytest.fixture(scope="module")
def ported() -> DlibResNetTorch:
    return DlibResNetTorch(device="cpu")


@pytest.fixture(scope="module")
def demo_chips(demo_dataset: Dataset, aligned: Aligned) -> Chips:
    return aligned(demo_dataset, "dlib-150")


@pytest.fixture(scope="module")
def lfw_chips(lfw_fixture: Dataset, aligned: Aligned) -> Chips:
    return aligned(lfw_fixture, "dlib-150")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def loo_1nn_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN by cosine similarity."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(labels[sim.argmax(axis=1)] == labels))


def test_both_declare_the_protocols(native: DlibResNet, ported: DlibResNetTorch) -> None:
    assert isinstance(native, FeatureExtractor) and not native.info.differentiable
    assert isinstance(ported, DifferentiableExtractor) and ported.info.differentiable
    for info in (native.info, ported.info):
        assert (info.family, info.template, info.embedding_dim) == ("dlib-resnet", "dlib-150", 128)
    assert native.info.weight_sha256 == {dlib_resnet.MODEL_FILE: sha256_file(dlib_resnet.model_path())}
    assert ported.info.weight_sha256 == {
        name: sha256_file(WEIGHTS_DIR / "face-api" / name) for name in (MANIFEST, BINARY)
    }


@pytest.mark.parametrize("name", [MANIFEST, BINARY])
def test_torch_refuses_corrupted_weights(tmp_path: Path, name: str) -> None:
    shutil.copytree(WEIGHTS_DIR / "face-api", tmp_path, dirs_exist_ok=True)
    target = tmp_path / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=name):
        DlibResNetTorch(device="cpu", weights_dir=tmp_path)


def test_dlib_refuses_corrupted_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / dlib_resnet.MODEL_FILE
    data = bytearray(dlib_resnet.model_path().read_bytes())
    data[-1] ^= 0x01
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(dlib_resnet, "model_path", lambda: copy)
    with pytest.raises(WeightsError, match=dlib_resnet.MODEL_FILE):
        DlibResNet()


def assert_port_agrees(reference: np.ndarray, ours: np.ndarray) -> None:
    cos = cosine_rows(reference, ours)
    assert cos.min() >= 0.99, f"worst face: cosine {cos.min():.5f}"
    assert cos.mean() >= 0.999  # measured 0.9996: the port's uint8 weights are the only difference
    # Same scale too (neither normalises): norms agree, not just directions.
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(reference, axis=1), rtol=0.02)


def test_torch_matches_dlib_on_every_face(demo_chips: Chips, native: DlibResNet, ported: DlibResNetTorch) -> None:
    faces, labels = demo_chips
    # Three faces per identity keeps dlib's share of the runtime to seconds; the slow tests cover every face.
    subset = np.concatenate([np.flatnonzero(labels == name)[:3] for name in np.unique(labels)])
    assert_port_agrees(native.embed(faces[subset]), ported.embed(faces[subset]))


def test_torch_separates_identities(demo_chips: Chips, ported: DlibResNetTorch) -> None:
    faces, labels = demo_chips
    assert loo_1nn_accuracy(ported.embed(faces), labels) >= 0.9


@pytest.mark.slow
def test_dlib_separates_identities_and_port_agrees(
    demo_chips: Chips, native: DlibResNet, ported: DlibResNetTorch
) -> None:
    faces, labels = demo_chips
    reference = native.embed(faces)
    assert loo_1nn_accuracy(reference, labels) >= 0.9
    assert_port_agrees(reference, ported.embed(faces))


@pytest.mark.lfw
@pytest.mark.slow
def test_both_separate_identities_on_lfw_fixture(lfw_chips: Chips, native: DlibResNet, ported: DlibResNetTorch) -> None:
    faces, labels = lfw_chips
    reference, ours = native.embed(faces), ported.embed(faces)
    assert loo_1nn_accuracy(reference, labels) >= 0.9
    assert loo_1nn_accuracy(ours, labels) >= 0.9
    assert_port_agrees(reference, ours)


def test_gradients_reach_the_pixels(demo_chips: Chips, ported: DlibResNetTorch) -> None:
    faces, _ = demo_chips
    x = torch.tensor(faces[:2]).permute(0, 3, 1, 2).float().requires_grad_(True)
    module = ported.torch_module()
    clean = module(x).detach()
    # A cloak-style objective: push the embedding of the first face towards the second's.
    loss = torch.sum((module(x[:1]) - clean[1:]) ** 2)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad[0].abs().sum() > 0 and x.grad[1].abs().sum() == 0
    assert not any(p.requires_grad for p in module.parameters())


def test_embeddings_are_deterministic(demo_chips: Chips, native: DlibResNet, ported: DlibResNetTorch) -> None:
    faces = demo_chips[0][:2]
    for model in (native, ported):
        first, second = model.embed(faces), model.embed(faces)
        assert first.dtype == np.float32 and first.shape == (2, 128)
        np.testing.assert_array_equal(first, second)


def test_torch_batch_size_does_not_matter(demo_chips: Chips, ported: DlibResNetTorch) -> None:
    faces = demo_chips[0][:5]
    np.testing.assert_allclose(ported.embed(faces, batch_size=2), ported.embed(faces), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((1, 112, 112, 3), np.uint8), np.zeros((1, 150, 150, 3), np.float32)])
def test_rejects_wrong_inputs(native: DlibResNet, ported: DlibResNetTorch, bad: np.ndarray) -> None:
    for model in (native, ported):
        with pytest.raises(ValueError, match="150, 150, 3"):
            model.embed(bad)
