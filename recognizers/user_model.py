"""Any recognizer from a local ONNX or TorchScript file, declared rather than coded.

A user states the file, its format, the square input size, the alignment template its faces come in, and the
preprocessing the network expects; ``register_user_model`` adds it to ``EXTRACTORS`` under a name, so a campaign's
``models:`` section can use it as a victim (and, for TorchScript, as a differentiable surrogate).

Preprocessing (``Preprocessing``) is applied in PyTorch to RGB pixels in 0..255: resize from the template's size
to ``input_size`` when they differ (bilinear), reorder channels (RGB or BGR), ``(x - mean) / std`` per channel in
the model's channel order, then lay out as NCHW or NHWC. ``mean=0, std=255`` gives 0..1 input; ArcFace-style
models take ``mean=127.5, std=128`` (or 127.5). The first output is the embedding; it is L2-normalised unless
``l2_normalize=False``.

Loading a TorchScript file runs the program stored in it: load only files you trust. ``sha256`` pins the file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fawkes_eval.align import TEMPLATES
from fawkes_eval.data import sha256_file
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.types import ExtractorInfo
from recognizers.weights import WeightsError, verified

FORMATS = ("onnx", "torchscript")
Triple = tuple[float, float, float]
UNSTATED_LICENSE = "not stated: the license of the model file's owner applies"


def _triple(value: float | Sequence[float], what: str) -> Triple:
    values = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"preprocessing {what} must be one number or three (one per channel), got {value!r}")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class Preprocessing:
    """How the network wants its pixels: channel order, layout, and (x - mean) / std on 0..255 values."""

    channels: str = "RGB"  # "RGB" or "BGR"
    layout: str = "NCHW"  # "NCHW" or "NHWC"
    mean: Triple = (127.5, 127.5, 127.5)  # per channel, in the model's channel order, 0..255 units
    std: Triple = (128.0, 128.0, 128.0)

    def __post_init__(self) -> None:
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"preprocessing channels must be 'RGB' or 'BGR', got {self.channels!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"preprocessing layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        if min(self.std) <= 0:
            raise ValueError(f"preprocessing std must be positive, got {self.std}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Preprocessing:
        """From a campaign file's mapping (mean/std as one number or a list); unknown keys are named."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: channels, layout, mean, std")
        return cls(**values)

    def describe(self) -> str:
        return f"RGB 0..255 -> {self.channels}, (x - {self.mean}) / {self.std}, {self.layout}"


@dataclass(frozen=True)
class UserModelSpec:
    """A recognizer declared by its user: exactly the parameters of ``register_user_model``."""

    name: str
    path: Path
    format: str
    input_size: int
    template: str
    preprocessing: Preprocessing
    sha256: str | None = None
    license: str = UNSTATED_LICENSE
    l2_normalize: bool = True

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"{self.path}: format must be one of {FORMATS}, got {self.format!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"{self.path}: unknown alignment template {self.template!r}; known: {', '.join(TEMPLATES)}")
        if self.input_size <= 0:
            raise ValueError(f"{self.path}: input_size must be positive, got {self.input_size}")
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: model file missing")


class _Preprocess(nn.Module):
    """float (N, 3, S, S) RGB 0..255 at the template's size -> the network's input tensor."""

    def __init__(self, spec: UserModelSpec) -> None:
        super().__init__()
        self.size = spec.input_size
        self.bgr = spec.preprocessing.channels == "BGR"
        self.nhwc = spec.preprocessing.layout == "NHWC"
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(spec.preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.preprocessing.std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.bgr:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        return x.permute(0, 2, 3, 1) if self.nhwc else x


class _Embedding(nn.Module):
    """Preprocessing, the user's network (its first output), optional L2 normalisation."""

    def __init__(self, preprocess: _Preprocess, network: nn.Module, l2_normalize: bool) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.network = network
        self.l2_normalize = l2_normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(self.preprocess(x))
        out = (out[0] if isinstance(out, list | tuple) else out).flatten(1)
        return F.normalize(out, dim=1) if self.l2_normalize else out


class UserModel:
    """A recognizer from a local ONNX (onnxruntime) or TorchScript (torch.jit) file; see ``register_user_model``.

    Shape: uint8 (N, S, S, 3) RGB at ``spec.template`` -> float32 (N, D). TorchScript models are differentiable
    (``torch_module()``); ONNX models are not.
    """

    batch_size = 32

    def __init__(self, spec: UserModelSpec, device: str | None = None) -> None:
        self.spec = spec
        if spec.sha256:
            verified(spec.path, spec.sha256)
        sha = spec.sha256 or sha256_file(spec.path)
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() and spec.format == "torchscript"
                                               else "cpu"))
        self._preprocess = _Preprocess(spec).to(self._device)
        self._module: _Embedding | None = None
        self._session: Any = None
        if spec.format == "torchscript":
            try:
                network = torch.jit.load(str(spec.path), map_location=self._device)
            except RuntimeError as e:
                raise ValueError(f"{spec.path}: not a loadable TorchScript file ({e})") from e
            self._module = _Embedding(self._preprocess, network, spec.l2_normalize).eval()
            for p in self._module.parameters():
                p.requires_grad_(False)
            library = f"torch {torch.__version__}"
        else:
            import onnxruntime

            try:
                self._session = onnxruntime.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
                raise ValueError(f"{spec.path}: not a loadable ONNX model ({e})") from e
            self._check_onnx_input()
            library = f"onnxruntime {onnxruntime.__version__}"
        size = TEMPLATES[spec.template].size
        probe = self.embed(np.zeros((1, size, size, 3), np.uint8))  # learns the embedding size, checks the shapes
        self.info = ExtractorInfo(
            name=spec.name, family=spec.name, input_size=spec.input_size, template=spec.template,
            preprocessing=spec.preprocessing.describe() + (", L2-normalised output" if spec.l2_normalize else ""),
            embedding_dim=int(probe.shape[1]), differentiable=spec.format == "torchscript", license=spec.license,
            backend="torch" if spec.format == "torchscript" else "onnxruntime",
            weight_sha256={spec.path.name: sha}, source=f"user model {spec.path} ({spec.format}, {library})",
        )

    def _check_onnx_input(self) -> None:
        inputs = self._session.get_inputs()
        shape = list(inputs[0].shape)
        channels_at = 1 if self.spec.preprocessing.layout == "NCHW" else 3
        size = self.spec.input_size
        spatial = shape[2:4] if channels_at == 1 else shape[1:3]
        if len(inputs) != 1 or len(shape) != 4 or shape[channels_at] != 3 or any(
                isinstance(d, int) and d != size for d in spatial):
            raise ValueError(f"{self.spec.path}: ONNX input {inputs[0].name} has shape {shape}, which does not take "
                             f"one {self.spec.preprocessing.layout} batch of 3-channel {size}x{size} images")

    def torch_module(self) -> nn.Module:
        """float (N, 3, S, S) RGB 0..255 -> (N, D), preprocessing inside, weights frozen (TorchScript only)."""
        if self._module is None:
            raise RuntimeError(f"{self.spec.name}: torch_module() needs a TorchScript model (this one is ONNX)")
        return self._module

    def embed(self, faces: np.ndarray) -> np.ndarray:
        size = TEMPLATES[self.spec.template].size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f"{self.spec.name}: expected (N, {size}, {size}, 3) {self.spec.template} crops, "
                             f"got {faces.shape}")
        chunks = [self._embed_batch(faces[i: i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.info.embedding_dim), np.float32)

    def _embed_batch(self, faces: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.tensor(faces, device=self._device).permute(0, 3, 1, 2).float()
            if self._module is not None:
                return self._module(x).cpu().numpy().astype(np.float32)
            pixels = self._preprocess(x).cpu().numpy()
        out = self._session.run(None, {self._session.get_inputs()[0].name: pixels})[0]
        out = np.asarray(out, np.float32).reshape(len(faces), -1)
        if self.spec.l2_normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def register_user_model(name: str, path: str | Path, format: str, input_size: int, template: str,
                        preprocessing: Preprocessing | Mapping[str, Any] | None = None, sha256: str | None = None,
                        license: str | None = None, l2_normalize: bool = True) -> UserModelSpec:
    """Add a local ONNX / TorchScript recognizer to ``EXTRACTORS`` as ``name``; the file is loaded on first use.

    ``preprocessing``: a ``Preprocessing`` or a mapping with its keys (channels, layout, mean, std); None: the
    defaults (RGB, NCHW, mean 127.5, std 128). Errors (missing file, bad format or template, a name already
    registered) are raised here, naming the file.
    """
    if preprocessing is None:
        preprocessing = Preprocessing()
    elif not isinstance(preprocessing, Preprocessing):
        preprocessing = Preprocessing.from_mapping(preprocessing)
    spec = UserModelSpec(name=name, path=Path(path).expanduser(), format=format, input_size=input_size,
                         template=template, preprocessing=preprocessing, sha256=sha256,
                         license=license or UNSTATED_LICENSE, l2_normalize=l2_normalize)
    EXTRACTORS.register(name, summary=f"user {format} model {spec.path}, {template} template")(
        functools.partial(UserModel, spec))
    return spec
