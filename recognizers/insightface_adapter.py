"""InsightFace recognition models (ArcFace-style ONNX) as victim extractors, loaded by insightface itself, offline.

A model is either one ONNX file (``model_path``) or the recognition model of a ``FaceAnalysis`` pack
(``pack="buffalo_l"``) found under ``root/models/<pack>/`` (insightface's own layout, ``root`` defaults to
``~/.insightface``). Files are loaded with ``insightface.model_zoo.get_model`` (a pack with a 2.x manifest through
its ``model_task="recognition"`` entry), which routes a square input of 112 px or more to ``ArcFaceONNX``; embeddings
come from its ``get_feat`` (BGR in, its input normalisation, the session) and are L2-normalised, as insightface's
``normed_embedding``. Nothing is downloaded: a missing file or pack raises ``InsightFaceWeightsMissing``.

The ``arcface-112`` template uses insightface's own 5-point reference (``face_align.arcface_dst``), so our crops are
what ``FaceAnalysis`` would feed the model after its detector and ``norm_crop``.

Licenses: InsightFace's model packs (buffalo_*, antelopev2) are for non-commercial research use only; a model file
of your own carries the license you state.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.align import TEMPLATES
from fawkes_eval.data import sha256_file
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.types import ExtractorInfo
from recognizers.weights import WeightsError, verified

PACK_LICENSE = "non-commercial research use only (InsightFace model packs, deepinsight/insightface)"
# The recognition file inside each published pack, for the error message when a pack is missing.
PACK_RECOGNITION_FILES = {
    "buffalo_l": "w600k_r50.onnx", "buffalo_m": "w600k_r50.onnx", "buffalo_s": "w600k_mbf.onnx",
    "buffalo_sc": "w600k_mbf.onnx", "antelopev2": "glintr100.onnx",
}
DEFAULT_ROOT = "~/.insightface"


class InsightFaceWeightsMissing(WeightsError):
    """An InsightFace model file or pack is not where it was looked for; the message names it."""


def _recognition_model(path: Path) -> Any:
    """insightface's model for one ONNX file, or None when its router sees no recognition model in it."""
    from insightface.model_zoo import get_model

    model = get_model(str(path), providers=["CPUExecutionProvider"])
    return model if model is not None and getattr(model, "taskname", None) == "recognition" else None


def _pack_model(pack_dir: Path) -> tuple[Any, Path]:
    """The recognition model of a pack: through its manifest when it has one, else the one recognition ONNX."""
    from insightface.model_zoo import get_model
    from insightface.model_zoo.package_manifest import has_model_package_manifest

    if has_model_package_manifest(str(pack_dir)):
        model = get_model(str(pack_dir), model_task="recognition", providers=["CPUExecutionProvider"])
        return model, Path(model.model_file)
    # Legacy packs: FaceAnalysis routes every *.onnx in the folder; some zips nest the files one folder deeper.
    candidates = sorted(pack_dir.glob("*.onnx")) or sorted(pack_dir.glob("*/*.onnx"))
    found = [(m, p) for p in candidates if (m := _recognition_model(p)) is not None]
    if len(found) != 1:
        raise InsightFaceWeightsMissing(
            f"{pack_dir}: expected exactly one recognition model among {[p.name for p in candidates] or 'no .onnx files'}, "
            f"found {len(found)}")
    return found[0]


class InsightFaceExtractor:
    """An InsightFace ArcFace-style recognition model.

    Arguments: ``model_path`` (one ONNX file) or ``pack`` (a FaceAnalysis pack name under ``root/models``);
    ``name`` (registry/result name; default ``insightface-<pack or file stem>``); ``license`` (for a file of your
    own; packs are non-commercial research); ``sha256`` (checked before loading when given); ``family`` (the
    independent model family, default the name's); ``input_mean`` /
    ``input_std`` (override insightface's guess of whether the graph normalises its input itself).
    Shape: uint8 (N, S, S, 3) RGB at ``info.template`` -> float32 (N, D), unit norm.
    """

    def __init__(self, model_path: str | Path | None = None, pack: str | None = None, root: str | Path = DEFAULT_ROOT,
                 name: str | None = None, license: str | None = None, sha256: str | None = None,
                 family: str | None = None, input_mean: float | None = None, input_std: float | None = None,
                 batch_size: int = 64) -> None:
        if (model_path is None) == (pack is None):
            raise ValueError("InsightFaceExtractor: give exactly one of model_path (an .onnx file) or pack (a name)")
        import insightface
        import onnxruntime

        if pack is not None:
            pack_dir = Path(root).expanduser() / "models" / pack
            if not pack_dir.is_dir():
                expected = PACK_RECOGNITION_FILES.get(pack, "its .onnx files")
                raise InsightFaceWeightsMissing(
                    f"{pack_dir}: InsightFace pack {pack!r} missing; unzip {pack}.zip there (recognition model "
                    f"{expected}). fawkes-eval never downloads weights.")
            self._model, path = _pack_model(pack_dir)
            license = PACK_LICENSE
        else:
            path = Path(model_path).expanduser()  # type: ignore[arg-type]  # not None: checked above
            if not path.is_file():
                raise InsightFaceWeightsMissing(f"{path}: InsightFace model file missing")
            if sha256 is not None:
                verified(path, sha256)
            self._model = _recognition_model(path)
            if self._model is None:
                raise ValueError(f"{path}: insightface does not route this ONNX to a recognition model "
                                 "(it wants one NCHW input, square, 112 px or more, a multiple of 16, and one output)")
        if input_mean is not None:
            self._model.input_mean = input_mean
        if input_std is not None:
            self._model.input_std = input_std
        self.batch_size = batch_size
        size = int(self._model.input_size[0])
        self.info = ExtractorInfo(
            name=name or f"insightface-{pack or path.stem}",
            family=family or f"insightface-{pack or path.stem}",
            input_size=size,
            template="arcface-224" if size >= 224 else "arcface-112",
            preprocessing=f"insightface ArcFaceONNX.get_feat: BGR->RGB, (x - {self._model.input_mean}) / "
                          f"{self._model.input_std}, resized to {size}; L2-normalised output",
            embedding_dim=int(self._model.output_shape[-1]),
            differentiable=False,
            license=license or "not stated: the license of the model file's owner applies",
            backend="onnxruntime",
            weight_sha256={path.name: sha256_file(path)},
            source=f"insightface {insightface.__version__} (onnxruntime {onnxruntime.__version__}), {path}",
        )

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB crops -> float32 (N, D), unit norm."""
        size = TEMPLATES[self.info.template].size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or faces.dtype != np.uint8:
            raise ValueError(f"{self.info.name}: expected uint8 (N, {size}, {size}, 3) {self.info.template} crops, "
                             f"got {faces.dtype} {faces.shape}")
        chunks = []
        for start in range(0, len(faces), self.batch_size):
            bgr = [np.ascontiguousarray(face[..., ::-1]) for face in faces[start: start + self.batch_size]]
            chunks.append(np.asarray(self._model.get_feat(bgr), dtype=np.float32).reshape(len(bgr), -1))
        if not chunks:
            return np.zeros((0, self.info.embedding_dim), np.float32)
        out = np.concatenate(chunks)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def register_insightface_model(name: str, model_path: str | Path, license: str | None = None,
                               sha256: str | None = None) -> None:
    """Register one ArcFace-style ONNX file as the victim ``name`` (e.g. from a campaign's ``models:`` section)."""
    factory = functools.partial(InsightFaceExtractor, model_path=model_path, name=name, license=license,
                                sha256=sha256)
    EXTRACTORS.register(name, summary=f"InsightFace ONNX model {model_path}")(factory)
