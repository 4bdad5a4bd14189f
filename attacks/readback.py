"""A cloak as a third party sees it: the cloaked photo re-detected, re-aligned and embedded, beside the clean one.

What a recognizer does with an upload is detect the face, align it on its own template and embed the crop; a
cloak only protects if that embedding moves. For each face the detector finds in the clean photo, this module
finds it again in the cloaked photo (the detection whose centre is nearest, within half the clean box's
width), aligns both photos at each extractor's template and reports the relative feature change
``||f(x') - f(x)|| / ||f(x)||``. A face the detector no longer finds is aligned with the clean photo's landmarks
(as the campaigns' victims fall back, ``scenarios.photos.EmbeddingCache``) and reported as not re-detected.

``DEFAULT_MIN_CHANGE`` (0.5) is the change below which a face is flagged as barely changed. It is set from
dlib-resnet-torch on LFW ``fixture_8x6``: two clean photos of one person differ by 0.29 (median), two people by
0.58 (median; 10th percentile 0.50), so a face moved less than 0.5 stays nearer its own clean photos than most
strangers are. Measured on LFW (README.md, "Checking cloaks"): photos cloaked on the aligned template moved
by about 0.7 and protected; Fawkes' square-crop merge moved them by about 0.4 and did not. Other extractors have
other scales: pass a threshold of their own.

Used by the ``cloak`` verb on every photo it writes and by ``cloak --check CLEAN_DIR CLOAKED_DIR`` on pairs made
by any tool (``attacks.external.pair_files``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from attacks.external import load_cloaked, pair_files
from fawkes_eval.align import AlignedFace, FaceAligner, load_photo, warp_photo_to_crop
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.types import FeatureExtractor

DEFAULT_MIN_CHANGE = 0.5
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceChange:
    box: Box  # the clean photo's detection (left, top, right, bottom)
    change: dict[str, float]  # extractor name -> ||f(x') - f(x)|| / ||f(x)|| after re-detection and re-alignment
    redetected: bool  # False: the detector no longer finds this face; aligned with the clean photo's landmarks

    def smallest(self) -> float:
        return min(self.change.values()) if self.change else float("nan")


def _match(clean: Sequence[AlignedFace], cloaked: Sequence[AlignedFace]) -> list[int | None]:
    """For each clean face, the index of the cloaked detection whose centre is nearest (within half the clean
    box's width), each used once; None where there is none."""
    taken: set[int] = set()
    matches: list[int | None] = []
    for face in clean:
        left, top, right, bottom = face.box
        centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0])
        best, best_distance = None, (right - left) / 2.0
        for j, other in enumerate(cloaked):
            o_left, o_top, o_right, o_bottom = other.box
            distance = float(np.hypot(*(centre - [(o_left + o_right) / 2.0, (o_top + o_bottom) / 2.0])))
            if j not in taken and distance <= best_distance:
                best, best_distance = j, distance
        if best is not None:
            taken.add(best)
        matches.append(best)
    return matches


def _relative(clean: np.ndarray, cloaked: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(clean, axis=1)
    return np.linalg.norm(cloaked - clean, axis=1) / np.where(norms > 0, norms, 1.0)


def face_changes(
    clean: np.ndarray,
    cloaked: np.ndarray,
    extractors: Sequence[FeatureExtractor],
    aligner: FaceAligner | None,
    min_face: int = 30,
    source: str = "<array>",
    aligned: bool = False,
) -> list[FaceChange]:
    """The feature change of every face of ``clean`` (uint8 RGB) in ``cloaked`` (the same photo, cloaked and read
    back), by each extractor; in the order of ``FaceAligner.detect_faces``. ``aligned``: both are face crops
    already (no detection: each is resized to the extractor's input)."""
    if clean.shape != cloaked.shape:
        raise ValueError(f"{source}: the cloaked photo is {cloaked.shape[1]}x{cloaked.shape[0]}, the clean one "
                         f"{clean.shape[1]}x{clean.shape[0]}")
    if aligned:
        h, w = clean.shape[:2]
        change: dict[str, float] = {}
        for extractor in extractors:
            size = extractor.info.input_size
            pair = [np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR)) for p in (clean, cloaked)]
            vectors = extractor.embed(np.stack(pair))
            change[extractor.info.name] = float(_relative(vectors[:1], vectors[1:])[0])
        return [FaceChange((0, 0, w, h), change, True)]
    if aligner is None:
        raise ValueError("face_changes needs a FaceAligner to detect faces (or aligned=True for face crops)")
    boxes: list[Box] = []
    redetected: list[bool] = []
    changes: list[dict[str, float]] = []
    for extractor in extractors:
        template = extractor.info.template
        clean_faces = aligner.align_faces(clean, template, min_face, source)
        cloaked_faces = aligner.align_faces(cloaked, template, min_face, source)
        matches = _match(clean_faces, cloaked_faces)
        crops = [cloaked_faces[j].crop if j is not None else warp_photo_to_crop(cloaked, f.matrix, f.crop.shape[0])
                 for f, j in zip(clean_faces, matches, strict=True)]  # fmt: skip
        if not boxes:
            boxes = [f.box for f in clean_faces]
            redetected = [j is not None for j in matches]
            changes = [{} for _ in clean_faces]
        if not clean_faces:
            continue
        vectors = extractor.embed(np.stack([f.crop for f in clean_faces] + crops))
        for i, value in enumerate(_relative(vectors[: len(crops)], vectors[len(crops) :])):
            changes[i][extractor.info.name] = float(value)
    return [FaceChange(b, c, r) for b, c, r in zip(boxes, changes, redetected, strict=True)]


def median_changes(faces: Sequence[FaceChange]) -> dict[str, float]:
    """Per extractor, the median feature change over faces."""
    names = sorted({name for f in faces for name in f.change})
    return {name: float(np.median([f.change[name] for f in faces if name in f.change])) for name in names}


def flagged_faces(labelled: Sequence[tuple[str, FaceChange]], threshold: float) -> list[str]:
    """One line per face (labelled by its photo) whose change under some extractor is below ``threshold``, or that
    the detector no longer finds."""
    lines = []
    for label, face in labelled:
        low = {name: value for name, value in face.change.items() if value < threshold}
        if low:
            values = ", ".join(f"{name} {value:.2f}" for name, value in low.items())
            lines.append(f"{label} face at {face.box}: this face is barely changed after re-alignment "
                         f"({values} < {threshold})")  # fmt: skip
        if not face.redetected:
            lines.append(f"{label} face at {face.box}: not found again by the detector (measured with the clean "
                         "photo's landmarks)")  # fmt: skip
    return lines


@dataclass
class PairCheck:
    relative: str  # the clean file, relative to the clean folder
    faces: list[FaceChange] = field(default_factory=list)
    full: dict[str, float] = field(default_factory=dict)  # dssim, ssim, psnr, linf, l2 on the whole photo
    reason: str = ""  # why a pair could not be checked


def check_pairs(
    clean_dir: Path,
    cloaked_dir: Path,
    extractors: Sequence[FeatureExtractor],
    aligner: FaceAligner,
    accept_resized: bool = False,
    min_face: int = 30,
) -> tuple[str, list[PairCheck]]:
    """Every clean/cloaked pair of two folders (paired by relative path, ``attacks.external.pair_files``),
    checked; returns the pairing's summary and one ``PairCheck`` per pair."""
    pairing = pair_files(clean_dir, cloaked_dir, accept_resized)
    checks = []
    for pair in pairing.pairs:
        check = PairCheck(pair.relative)
        try:
            clean, cloaked = load_photo(pair.clean), load_cloaked(pair)
            check.faces = face_changes(clean, cloaked, extractors, aligner, min_face, pair.relative)
            check.full = image_metrics(clean, cloaked)
            if not check.faces:
                check.reason = f"no face of >= {min_face} px found in the clean photo"
        except (OSError, ValueError) as e:
            check.reason = str(e)
        checks.append(check)
    return pairing.summary(), checks
