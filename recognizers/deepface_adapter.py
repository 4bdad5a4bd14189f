"""DeepFace's face-recognition models as victim extractors, offline.

DeepFace (serengil/deepface) names a model (``"Dlib"``, ``"ArcFace"``, ``"Facenet512"``, ...) and runs it on one
backend engine per process (TensorFlow, PyTorch or onnxruntime; ``$DEEPFACE_BACKEND_ENGINE`` picks it). Its weights
live in ``$DEEPFACE_HOME/.deepface/weights/`` (``$DEEPFACE_HOME`` defaults to the home directory); when a file is
missing DeepFace downloads it. We never let it: the expected file is checked before DeepFace is touched, and while
the model is built DeepFace's downloader is replaced by a check that raises ``DeepFaceWeightsMissing`` naming the
file and the folder, so a model this table does not know fails the same way instead of reaching for the network.

Faces arrive aligned by fawkes-eval (``detector_backend="skip"``, the default) and go through DeepFace's own
``represent`` path (its resize-with-padding to the model's input, its normalisation, its forward pass), so the
embeddings are the ones a DeepFace user gets. With another ``detector_backend`` DeepFace detects and aligns the
face again inside the crop it is given (the largest face; the whole crop when it finds none).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.align import TEMPLATES
from fawkes_eval.data import sha256_file
from fawkes_eval.types import ExtractorInfo
from recognizers.weights import WeightsError

ANY_ENGINE = "any"
ENGINES = ("tensorflow", "pytorch", "onnx")

# The file each recognition model of deepface 0.0.103 loads, per backend engine (its `file_name=` arguments).
# tests/test_deepface.py checks every entry against the installed deepface's source.
WEIGHT_FILES: dict[str, dict[str, str]] = {
    "VGG-Face": {"tensorflow": "vgg_face_weights.h5", "pytorch": "vgg_face_weights.pth",
                 "onnx": "vgg_face_weights.onnx"},
    "OpenFace": {"tensorflow": "openface_weights.h5", "pytorch": "openface_weights.pth",
                 "onnx": "openface_weights.onnx"},
    "Facenet": {"tensorflow": "facenet_weights.h5", "pytorch": "facenet_weights.pth", "onnx": "facenet_weights.onnx"},
    "Facenet512": {"tensorflow": "facenet512_weights.h5", "pytorch": "facenet512_weights.pth",
                   "onnx": "facenet512_weights.onnx"},
    "DeepFace": {"tensorflow": "VGGFace2_DeepFace_weights_val-0.9034.h5",
                 "pytorch": "VGGFace2_DeepFace_weights_val-0.9034.pth",
                 "onnx": "VGGFace2_DeepFace_weights_val-0.9034.onnx"},
    "DeepID": {"tensorflow": "deepid_keras_weights.h5", "pytorch": "deepid_weights.pth", "onnx": "deepid_weights.onnx"},
    "Dlib": {ANY_ENGINE: "dlib_face_recognition_resnet_model_v1.dat"},
    "ArcFace": {"tensorflow": "arcface_weights.h5", "pytorch": "arcface_weights.pth", "onnx": "arcface_weights.onnx"},
    "SFace": {ANY_ENGINE: "face_recognition_sface_2021dec.onnx"},
    "GhostFaceNet": {"tensorflow": "ghostfacenet_v1.h5", "pytorch": "ghostfacenet_v1.pth",
                     "onnx": "ghostfacenet_v1.onnx"},
    "Buffalo_L": {ANY_ENGINE: "buffalo_l/webface_r50.onnx"},
}

# Licenses of the weights where their upstream states one; DeepFace's own MIT license does not cover them.
WEIGHT_LICENSES: dict[str, str] = {
    "Dlib": "CC0-1.0 (dlib model by Davis King, davisking/dlib-models)",
    "SFace": "Apache-2.0 (opencv/opencv_zoo face_recognition_sface)",
    "OpenFace": "Apache-2.0 (cmusatyalab/openface)",
    "Facenet": "MIT (davidsandberg/facenet)",
    "Facenet512": "MIT (davidsandberg/facenet)",
    "Buffalo_L": "non-commercial research use only (InsightFace model packs)",
}
_UNKNOWN_LICENSE = "not stated by deepface: check the weights' upstream before any non-research use"


class DeepFaceWeightsMissing(WeightsError):
    """A DeepFace weight file is not where DeepFace looks; the message names the file and the folder."""


def weights_dir() -> Path:
    """Where DeepFace looks for weights: ``$DEEPFACE_HOME/.deepface/weights`` (home directory by default)."""
    return Path(os.environ.get("DEEPFACE_HOME") or Path.home()) / ".deepface" / "weights"


def expected_weight_file(model_name: str, engine: str) -> str | None:
    """The file DeepFace loads for ``model_name`` on ``engine``, or None when this table does not know it."""
    files = WEIGHT_FILES.get(model_name, {})
    return files.get(ANY_ENGINE) or files.get(engine)


def _missing(file_name: str, model_name: str, engine: str) -> DeepFaceWeightsMissing:
    folder = weights_dir()
    return DeepFaceWeightsMissing(
        f"{folder / file_name}: weight file missing. DeepFace model {model_name!r} (engine {engine}) expects "
        f"{file_name!r} in {folder} (set DEEPFACE_HOME to use another root); place the file there. "
        "fawkes-eval never downloads weights."
    )


@contextlib.contextmanager
def _downloads_refused(model_name: str, engine: str, loaded: dict[str, Path],
                       placed: dict[str, Path] | None = None) -> Iterator[None]:
    """Within the block, DeepFace's (and retina-face's) weight downloaders only find files, recording them.

    A file named in ``placed`` is taken from the path given there instead of DeepFace's weights folder.
    """
    import importlib

    modules = [importlib.import_module("deepface.commons.weight_utils")]
    with contextlib.suppress(ImportError):  # retina-face brings its own downloader for its detector
        modules.append(importlib.import_module("retinaface.commons.weight_utils"))
    originals: list[tuple[Any, Callable[..., str]]] = [(m, m.download_weights_if_necessary) for m in modules]

    def find_only(file_name: str, *args: Any, **kwargs: Any) -> str:
        path = (placed or {}).get(file_name, weights_dir() / file_name)
        if not path.is_file():
            raise _missing(file_name, model_name, engine)
        loaded[file_name] = path
        return str(path)

    try:
        for module, _ in originals:
            module.download_weights_if_necessary = find_only
        yield
    finally:
        for module, original in originals:
            module.download_weights_if_necessary = original


def _template_for(model_name: str, input_shape: tuple[int, int]) -> str:
    """dlib chips for DeepFace's Dlib; ArcFace crops otherwise (DeepFace resizes them to the model's input)."""
    if model_name == "Dlib":
        return "dlib-150"
    return "arcface-112" if max(input_shape) <= 112 else "arcface-224"


class DeepFaceExtractor:
    """A DeepFace recognition model on faces aligned by fawkes-eval.

    Arguments: ``model_name`` (DeepFace's name), ``detector_backend`` ("skip": use the crop as it is; a DeepFace
    detector name: detect again inside it), ``engine`` (None: DeepFace's choice; else it must match the engine
    this process's DeepFace already uses, or it is set for the process), ``template`` (None: chosen from the
    model's input size), ``batch_size``, ``weight_files`` (DeepFace file name -> a path to load instead of the one
    in DeepFace's weights folder, e.g. a file an installed package ships), ``name`` (the result name, default
    ``deepface-<model>``).
    Shape: uint8 (N, S, S, 3) RGB at ``info.template`` -> float32 (N, D), as DeepFace returns them (no L2 norm).
    """

    def __init__(self, model_name: str = "Dlib", detector_backend: str = "skip", engine: str | None = None,
                 template: str | None = None, batch_size: int = 32, weight_files: dict[str, Path] | None = None,
                 name: str | None = None) -> None:
        self.model_name = model_name
        self.detector_backend = detector_backend
        self.batch_size = batch_size
        self.engine = _resolve_engine(engine)
        placed = dict(weight_files or {})
        # Fast check first: fail before DeepFace imports a framework or builds a network.
        expected = expected_weight_file(model_name, self.engine)
        if expected is not None and not placed.get(expected, weights_dir() / expected).is_file():
            raise _missing(expected, model_name, self.engine)

        import deepface
        from deepface.modules import modeling

        loaded: dict[str, Path] = {}
        with _downloads_refused(model_name, self.engine, loaded, placed):
            # DeepFace's process-wide cache holds the model; represent() finds it there by name.
            self._model: Any = modeling.build_model(task="facial_recognition", model_name=model_name)
            if detector_backend != "skip":
                modeling.build_model(task="face_detector", model_name=detector_backend)
        if expected is not None:  # DeepFace builds a model once per process: a second build loads nothing
            loaded.setdefault(expected, placed.get(expected, weights_dir() / expected))
        input_shape = tuple(self._model.input_shape)
        self.info = ExtractorInfo(
            name=(name or f"deepface-{model_name.lower()}") + ("" if detector_backend == "skip" else f"-{detector_backend}"),
            family=f"deepface-{model_name.lower()}" if model_name != "Dlib" else "dlib-resnet",
            input_size=max(input_shape),
            template=template or _template_for(model_name, (input_shape[0], input_shape[1])),
            preprocessing=f"DeepFace represent: RGB->BGR, resize with padding to {input_shape}, /255 "
                          f"(normalization='base'), detector_backend={detector_backend!r}",
            embedding_dim=int(self._model.output_shape),
            differentiable=False,
            license=f"{WEIGHT_LICENSES.get(model_name, _UNKNOWN_LICENSE)}; deepface library MIT",
            backend=f"deepface-{self.engine}",
            weight_sha256={name: sha256_file(path) for name, path in sorted(loaded.items())},
            source=f"deepface {deepface.__version__} (engine {self.engine}), model {model_name!r}, "
                   f"weights from {', '.join(str(p) for p in sorted(set(loaded.values()))) or weights_dir()}",
        )

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB crops -> float32 (N, D)."""
        size = TEMPLATES[self.info.template].size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, {size}, {size}, 3) {self.info.template} crops, "
                             f"got {faces.dtype} {faces.shape}")
        chunks = [self._embed_batch(faces[i: i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.info.embedding_dim), np.float32)

    def _embed_batch(self, faces: np.ndarray) -> np.ndarray:
        from deepface.modules import representation

        bgr = [np.ascontiguousarray(face[..., ::-1]) for face in faces]
        results = representation.represent(
            bgr, model_name=self.model_name, detector_backend=self.detector_backend, enforce_detection=False,
            align=True, max_faces=1, normalization="base",
        )
        per_face = [results] if len(bgr) == 1 else results  # DeepFace unwraps a batch of one
        return np.array([faces_found[0]["embedding"] for faces_found in per_face], dtype=np.float32)


def _resolve_engine(engine: str | None) -> str:
    """DeepFace decides its engine once per process; a requested engine must agree with it (or set it first)."""
    from deepface.commons import backend_utils

    if engine is not None:
        if engine not in ENGINES:
            raise ValueError(f"deepface engine must be one of {ENGINES}, got {engine!r}")
        current = backend_utils._backend_engine
        if current is None:
            os.environ[backend_utils.BACKEND_ENGINE_ENV_VAR] = engine
        elif current != engine:
            raise ValueError(f"deepface already runs on {current} in this process; it cannot switch to {engine} "
                             f"(set {backend_utils.BACKEND_ENGINE_ENV_VAR} before the first DeepFace model)")
    return str(backend_utils.get_backend_engine())

