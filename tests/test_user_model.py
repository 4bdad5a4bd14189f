"""Recognizers declared from local files: a zoo model saved as TorchScript and as ONNX, each expecting a different
input convention, must embed real faces as the zoo model does once its preprocessing is declared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fawkes_eval.data import Dataset, sha256_file
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.types import DifferentiableExtractor
from recognizers.tfjs_models import MobileFace
from recognizers.user_model import Preprocessing, UserModel, UserModelSpec, register_user_model
from recognizers.weights import WeightsError

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]


class _BgrNhwcUnit(nn.Module):
    """Takes BGR, NHWC, 0..1 (a common Keras-style convention) and feeds the zoo module RGB NCHW 0..255."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.permute(0, 3, 1, 2).flip(1) * 255.0)


class _ArcFaceNchw(nn.Module):
    """Takes RGB, NCHW, (x - 127.5) / 128."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x * 128.0 + 127.5)


@pytest.fixture(scope="module")
def mobileface() -> MobileFace:
    return MobileFace(device="cpu")


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory: pytest.TempPathFactory, mobileface: MobileFace) -> Path:
    path = tmp_path_factory.mktemp("user-model") / "mobileface-bgr-nhwc.pt"
    traced = torch.jit.trace(_BgrNhwcUnit(mobileface.torch_module()).eval(), torch.rand(2, 112, 112, 3))
    traced.save(str(path))
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory, mobileface: MobileFace) -> Path:
    path = tmp_path_factory.mktemp("user-model") / "mobileface-arcface.onnx"
    torch.onnx.export(_ArcFaceNchw(mobileface.torch_module()).eval(), (torch.zeros(2, 3, 112, 112),), str(path),
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False)
    return path


def spec(path: Path, fmt: str, preprocessing: Preprocessing, template: str = "arcface-112") -> UserModelSpec:
    return UserModelSpec(name=path.stem, path=path, format=fmt, input_size=112, template=template,
                         preprocessing=preprocessing)


def assert_agrees(model: UserModel, mobileface: MobileFace, faces: np.ndarray, min_cosine: float) -> None:
    ours, reference = model.embed(faces), mobileface.embed(faces)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= min_cosine, f"worst face: cosine {cosine.min():.6f}"


def test_torchscript_with_declared_bgr_nhwc_unit_input(torchscript_file: Path, mobileface: MobileFace,
                                                        demo_dataset: Dataset, aligned: Aligned) -> None:
    model = UserModel(spec(torchscript_file, "torchscript", Preprocessing("BGR", "NHWC", mean=(0, 0, 0),
                                                                          std=(255, 255, 255))))
    faces = aligned(demo_dataset, "arcface-112")[0][::10]
    assert_agrees(model, mobileface, faces, 0.99999)
    assert isinstance(model, DifferentiableExtractor) and model.info.differentiable
    assert model.info.weight_sha256 == {torchscript_file.name: sha256_file(torchscript_file)}
    x = torch.tensor(faces[:1]).permute(0, 3, 1, 2).float().requires_grad_(True)
    model.torch_module()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_wrong_declaration_gives_other_embeddings(torchscript_file: Path, mobileface: MobileFace,
                                                  demo_dataset: Dataset, aligned: Aligned) -> None:
    """The declaration matters: the same file told RGB instead of BGR embeds differently."""
    model = UserModel(spec(torchscript_file, "torchscript", Preprocessing("RGB", "NHWC", mean=(0, 0, 0), std=(255, 255, 255))))
    faces = aligned(demo_dataset, "arcface-112")[0][::10]
    cosine = np.sum(model.embed(faces) * mobileface.embed(faces), axis=1)
    assert cosine.min() < 0.999


def test_onnx_with_arcface_preprocessing(onnx_file: Path, mobileface: MobileFace, demo_dataset: Dataset,
                                         aligned: Aligned) -> None:
    model = UserModel(spec(onnx_file, "onnx", Preprocessing()))  # the defaults: RGB, NCHW, (x - 127.5) / 128
    faces = aligned(demo_dataset, "arcface-112")[0][::5]
    assert_agrees(model, mobileface, faces, 0.9999)
    assert not model.info.differentiable and model.info.backend == "onnxruntime"
    with pytest.raises(RuntimeError, match="TorchScript"):
        model.torch_module()


def test_input_resized_from_another_template(onnx_file: Path, mobileface: MobileFace, demo_dataset: Dataset,
                                             aligned: Aligned) -> None:
    """Crops at arcface-224 are resized to the declared 112 px: the same face at half the scale."""
    model = UserModel(spec(onnx_file, "onnx", Preprocessing(), template="arcface-224"))
    big, small = aligned(demo_dataset, "arcface-224")[0][::10], aligned(demo_dataset, "arcface-112")[0][::10]
    cosine = np.sum(model.embed(big) * mobileface.embed(small), axis=1)
    assert cosine.min() >= 0.95


def test_register_from_plain_values(onnx_file: Path) -> None:
    """What a campaign file's models: section passes: plain strings, numbers and a mapping."""
    made = register_user_model("test-user-onnx", str(onnx_file), "onnx", 112, "arcface-112",
                               {"channels": "RGB", "layout": "NCHW", "mean": 127.5, "std": [128, 128, 128]},
                               sha256=sha256_file(onnx_file), license="MIT")
    assert made.preprocessing == Preprocessing()
    extractor = EXTRACTORS.create("test-user-onnx")
    assert extractor.info.name == "test-user-onnx" and extractor.info.license == "MIT"
    with pytest.raises(ValueError, match="already registered"):
        register_user_model("test-user-onnx", onnx_file, "onnx", 112, "arcface-112")


def test_bad_declarations_are_named(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"missing\.onnx: model file missing"):
        register_user_model("test-user-missing", tmp_path / "missing.onnx", "onnx", 112, "arcface-112")
    with pytest.raises(ValueError, match="format"):
        register_user_model("test-user-format", onnx_file, "keras", 112, "arcface-112")
    with pytest.raises(ValueError, match=r"unknown preprocessing keys \['scale'\]"):
        register_user_model("test-user-keys", onnx_file, "onnx", 112, "arcface-112", {"scale": 1})
    with pytest.raises(ValueError, match=r"mobileface-arcface\.onnx: ONNX input .* 128x128"):
        UserModel(UserModelSpec("x", onnx_file, "onnx", 128, "arcface-112", Preprocessing()))
    with pytest.raises(WeightsError, match="does not match"):
        UserModel(UserModelSpec("x", onnx_file, "onnx", 112, "arcface-112", Preprocessing(), sha256="0" * 64))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"garbage\.pt: not a loadable TorchScript"):
        UserModel(UserModelSpec("x", garbage, "torchscript", 112, "arcface-112", Preprocessing()))
