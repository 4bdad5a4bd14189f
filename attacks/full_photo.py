"""Full photos: detect every face, cloak each where a recognizer will look, merge the change back into the photo.

Merges (``FullPhotoConfig.merge``):
- ``aligned`` (default): each detected face is aligned on the generator's template (the crop its surrogates
  were trained on, ``fawkes_eval.align``), cloaked there, and the change is warped back into the photo through
  the inverse of the alignment. The campaign path (``scenarios.photos.cloak_photos``) makes its cloaks with the
  same code (``cloak_and_merge``), so the verb's photos and the campaigns' cannot drift apart. A generator
  optimises all its surrogates jointly on one crop: surrogates of one alignment geometry at the largest
  template's size (``attacks.surrogates``); generators refuse surrogates of different geometries (dlib-150 with
  arcface-112), since one crop cannot be both. To cloak for two geometries, cloak in turn (run the verb on its
  own output with the other surrogates), knowing that each pass spends its own DSSIM budget.
- ``fawkes-square``: Fawkes v1.0's merge, faithful to Fawkes. Per detected face box (w x h), a square crop of
  side max(w, h) + 30 centred on the box, padded with the photo's mean colour where it leaves the photo, is
  resized to the generator's input size and cloaked; the change (cloaked - clean crop) is resized back to the
  square and cut to the box. Fawkes' own extractors were trained on such crops; ours expect their aligned
  template, and a cloak made on the square barely survives re-alignment (see README.md: the feature change
  after re-alignment is reported for every photo).
Either way the changes are added to the photo and the result rounded and clipped to 0..255; pixels no change
reaches are copied from the original, so they are exactly unchanged. Files keep their format, size, mode (RGB,
RGBA with its alpha, L) and EXIF data including the orientation tag: the cloak is made on the upright photo and
turned back to the stored orientation. Other modes (CMYK, 16-bit, palette) cannot hold the cloak as they are:
such photos are written as the RGB image the cloak was made on, without their colour profile. Files that
resolve outside the input folder (symlinks) are refused, not read. Lossy formats are re-encoded (JPEG with the
original's quantisation tables and subsampling), which moves pixels everywhere by the codec's error;
``output_format="png"`` writes lossless PNG instead.
With ``aligned=True`` each image is already a face crop: it is resized to the generator's input and the change
resized back over the whole image (merge ``pre-aligned``).
Every written file is then read back and checked as a third party would see it (``attacks.readback``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from attacks.readback import DEFAULT_MIN_CHANGE, FaceChange, face_changes, flagged_faces, median_changes
from fawkes_eval.align import (
    TEMPLATES,
    AlignedFace,
    FaceAligner,
    PhotoError,
    load_photo,
    no_face_hint,
    warp_crop_to_photo,
)
from fawkes_eval.data import IMAGE_SUFFIXES
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.types import CloakGenerator, FeatureExtractor

KEPT_MODES = ("RGB", "RGBA", "L")
OUTPUT_FORMATS = ("keep", "png")
MERGES = ("aligned", "fawkes-square")
PRE_ALIGNED = "pre-aligned"  # the merge a photo reports when the inputs are face crops (``aligned=True``)
_ORIENTATION_TAG = 0x0112
REPORT_CSV = "cloak-report.csv"
REPORT_JSON = "cloak-report.json"
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), within the photo


@dataclass(frozen=True)
class FullPhotoConfig:
    """Every parameter of the full-photo merge."""

    merge: str = "aligned"  # "aligned": on the generator's template, warped back; "fawkes-square": Fawkes v1.0's
    margin: int = 30  # fawkes-square: the square crop's side is max(w, h) + margin (Fawkes v1.0)
    min_face: int = 30  # smallest face side, px (Fawkes v1.0 keeps faces of >= 30 px)
    aligned: bool = False  # inputs are pre-aligned crops: no detection, the whole image is the face
    photos_per_call: int = 8  # photos whose faces go to the generator in one call (one batch, one seed)
    output_format: str = "keep"  # "keep" the input's format, or "png" (lossless)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("merge", self.merge in MERGES, f"one of {', '.join(MERGES)}"),
            ("margin", isinstance(self.margin, int) and self.margin >= 0, "an integer >= 0"),
            ("min_face", isinstance(self.min_face, int) and self.min_face >= 1, "an integer >= 1"),
            ("photos_per_call", isinstance(self.photos_per_call, int) and self.photos_per_call >= 1, "an integer >= 1"),
            ("output_format", self.output_format in OUTPUT_FORMATS, f"one of {', '.join(OUTPUT_FORMATS)}"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"FullPhotoConfig.{name} must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class FaceResult:
    box: Box  # bounding box of the pixels this face's change may reach, in the upright photo
    detection: Box  # the detector's box (left, top, right, bottom), in the upright photo
    crop: dict[str, float]  # dssim, ssim, psnr, linf, l2 between the clean and cloaked crop at the generator's input
    check: FaceChange | None = None  # the written file read back, re-detected, re-aligned, embedded


@dataclass
class PhotoResult:
    path: str  # relative to the input folder
    status: str  # "cloaked", "no-face" or "error"
    merge: str = ""  # "aligned", "fawkes-square" or "pre-aligned": how the photo's changes were made
    faces: list[FaceResult] = field(default_factory=list)
    full: dict[str, float] = field(default_factory=dict)  # dssim, ssim, psnr, linf, l2 on the upright photo
    seconds: float = 0.0
    reason: str = ""
    output: str = ""  # written file, relative to the output folder


@dataclass(frozen=True)
class Region:
    """Where a face crop comes from: a (possibly off-photo) rectangle of the photo, and the box it may change."""

    x0: int
    y0: int
    width: int
    height: int
    box: Box


def square_region(box: tuple[int, int, int, int], margin: int, photo_shape: tuple[int, ...]) -> Region:
    """Fawkes v1.0's square around a detection (left, top, right, bottom inclusive, may leave the photo)."""
    left, top, right, bottom = box
    w, h = right - left + 1, bottom - top + 1
    side = max(w, h) + margin
    x0 = int(round((left + right + 1) / 2.0 - side / 2.0))
    y0 = int(round((top + bottom + 1) / 2.0 - side / 2.0))
    height, width = photo_shape[:2]
    inside = (max(left, 0), max(top, 0), min(right + 1, width), min(bottom + 1, height))
    return Region(x0, y0, side, side, inside)


def crop_region(photo: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The region padded with the photo's mean colour, resized (bilinear) to ``size`` x ``size``: uint8."""
    mean = np.rint(photo.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    canvas = np.empty((region.height, region.width, 3), np.uint8)
    canvas[:] = mean
    height, width = photo.shape[:2]
    x1, y1 = max(region.x0, 0), max(region.y0, 0)
    x2, y2 = min(region.x0 + region.width, width), min(region.y0 + region.height, height)
    if x2 > x1 and y2 > y1:
        canvas[y1 - region.y0 : y2 - region.y0, x1 - region.x0 : x2 - region.x0] = photo[y1:y2, x1:x2]
    if canvas.shape[:2] == (size, size):
        return canvas
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.BILINEAR))


def change_in_box(delta: np.ndarray, region: Region) -> np.ndarray:
    """A float (S, S, 3) crop change resized (bilinear) to the region and cut to its box: (box h, box w, 3)."""
    if delta.shape[:2] == (region.height, region.width):
        resized = delta.astype(np.float32)
    else:
        resized = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(delta[..., c], dtype=np.float32), mode="F").resize(
                (region.width, region.height), Image.Resampling.BILINEAR))
            for c in range(3)
        ], axis=-1)  # fmt: skip
    left, top, right, bottom = region.box
    return resized[top - region.y0 : bottom - region.y0, left - region.x0 : right - region.x0]


@dataclass(frozen=True)
class PlacedFace:
    """A face's crop at the generator's input, and how a change made on it returns into the photo: through the
    alignment's ``matrix`` (photo -> crop, merge ``aligned``) or resized into a ``region`` (``fawkes-square``)."""

    crop: np.ndarray  # uint8 (S, S, 3)
    detection: Box  # the detector's box (left, top, right, bottom); a pre-aligned image's whole extent
    matrix: np.ndarray | None = None
    region: Region | None = None

    def change_in_photo(self, delta: np.ndarray, photo_shape: tuple[int, ...]) -> np.ndarray:
        """The float (S, S, 3) crop change as a float32 (H, W, 3) change of the photo, zero where it cannot reach."""
        if self.matrix is not None:
            return warp_crop_to_photo(delta, self.matrix, photo_shape).astype(np.float32)
        assert self.region is not None
        total = np.zeros((*photo_shape[:2], 3), np.float32)
        left, top, right, bottom = self.region.box
        total[top:bottom, left:right] = change_in_box(delta, self.region)
        return total

    def reach(self, photo_shape: tuple[int, ...]) -> Box:
        """Bounding box of the pixels a change of this crop may reach."""
        if self.matrix is None:
            assert self.region is not None
            return self.region.box
        size = self.crop.shape[0]
        footprint = warp_crop_to_photo(np.ones((size, size, 1), np.float32), self.matrix, photo_shape)[..., 0] > 0
        rows, cols = np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0))
        if not len(rows):
            return (0, 0, 0, 0)
        return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def aligned_face(face: AlignedFace) -> PlacedFace:
    """Merge ``aligned``: the face's crop on its template; the change goes back through the inverse alignment."""
    return PlacedFace(face.crop, face.box, matrix=face.matrix)


def square_face(photo: np.ndarray, box: tuple[int, int, int, int], margin: int, size: int) -> PlacedFace:
    """Merge ``fawkes-square``: Fawkes v1.0's square crop around a detection, resized to ``size``."""
    region = square_region(box, margin, photo.shape)
    return PlacedFace(crop_region(photo, region, size), box, region=region)


def merge_back(photo: np.ndarray, faces: Sequence[PlacedFace], deltas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add every face's change to the photo, round and clip: (uint8 photo, bool (H, W) mask of the pixels a change
    reached); every other pixel is the original's."""
    total = np.zeros(photo.shape, np.float32)
    for face, delta in zip(faces, deltas, strict=True):
        total += face.change_in_photo(delta, photo.shape)
    reached = np.any(total != 0, axis=-1)
    changed = np.clip(np.rint(photo.astype(np.float32) + total), 0, 255).astype(np.uint8)
    return np.where(reached[..., None], changed, photo), reached


@dataclass
class MergedPhoto:
    photo: np.ndarray  # uint8 cloaked photo, the original's size
    reached: np.ndarray  # bool (H, W): pixels a change reached; all others are the original's
    faces: np.ndarray  # float32 (F, S, S, 3): the cloaked crops as the generator made them, one per placed face
    dssim: np.ndarray  # (F,) DSSIM per crop, measured by the generator


def cloak_and_merge(
    generator: CloakGenerator,
    photos: Sequence[np.ndarray],
    faces: Sequence[Sequence[PlacedFace]],
    seed: int,
    users: Sequence[Sequence[str]] | None = None,
) -> tuple[list[MergedPhoto], float]:
    """Cloak the faces of photos and merge each change back: one generator call with ``seed`` for every face of
    every photo; returns one ``MergedPhoto`` per photo (a photo without faces comes back unchanged) and the
    generator's seconds. ``users``: each face's user, per photo, for generators that declared ``per_user``.
    The one implementation behind the ``cloak`` verb and the campaigns' photos."""
    if len(photos) != len(faces) or (users is not None and [len(u) for u in users] != [len(f) for f in faces]):
        raise ValueError(f"cloak_and_merge: {len(photos)} photos, {len(faces)} lists of faces"
                         + ("" if users is None else f", {len(users)} lists of users, not one per face"))  # fmt: skip
    size = TEMPLATES[generator.template].size
    crops = [f.crop for placed in faces for f in placed]
    out_faces = np.zeros((0, size, size, 3), np.float32)
    out_dssim = np.zeros((0,), np.float32)
    seconds = 0.0
    if crops:
        if users is None:
            out = generator.cloak(np.stack(crops), seed=seed)
        else:
            out = generator.cloak(np.stack(crops), seed, users=[u for per in users for u in per])  # type: ignore[call-arg]
        out_faces, out_dssim, seconds = out.faces, np.asarray(out.dssim), out.seconds
    merged: list[MergedPhoto] = []
    position = 0
    for photo, placed in zip(photos, faces, strict=True):
        cloaked = out_faces[position : position + len(placed)]
        dssim = out_dssim[position : position + len(placed)]
        position += len(placed)
        deltas = [c - f.crop.astype(np.float32) for c, f in zip(cloaked, placed, strict=True)]
        photo_out, reached = merge_back(photo, placed, deltas)
        merged.append(MergedPhoto(photo_out, reached, cloaked, dssim))
    return merged, seconds


def to_stored_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """Undo ``ImageOps.exif_transpose`` for an EXIF orientation (1 to 8) on an (H, W, ...) array."""
    undo: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, 1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, -1),
    }
    return np.ascontiguousarray(undo.get(orientation, undo[1])(upright))


@dataclass
class _Prepared:
    result: PhotoResult
    source: Path
    photo: np.ndarray  # upright RGB
    faces: list[PlacedFace]
    seconds: float


def _prepare(path: Path, relative: str, root: Path, aligner: FaceAligner | None, config: FullPhotoConfig,
             template: str) -> _Prepared:
    start = time.perf_counter()
    result = PhotoResult(relative, "cloaked", PRE_ALIGNED if config.aligned else config.merge)
    empty = np.zeros((0, 0, 3), np.uint8)
    resolved = path.resolve()
    size = TEMPLATES[template].size
    try:
        if not resolved.is_relative_to(root):
            raise PhotoError(f"{path}: refused: resolves to {resolved}, outside the input folder {root}")
        photo = load_photo(path)
    except (OSError, ValueError) as e:
        # PhotoError names the full path; the report names files relative to the input folder
        result.status, result.reason = "error", f"{relative}: {str(e).removeprefix(f'{path}: ')}"
        return _Prepared(result, path, empty, [], time.perf_counter() - start)
    if config.aligned:
        h, w = photo.shape[:2]
        whole = Region(0, 0, w, h, (0, 0, w, h))
        faces = [PlacedFace(crop_region(photo, whole, size), whole.box, region=whole)]
    else:
        assert aligner is not None
        if config.merge == "aligned":
            faces = [aligned_face(f) for f in aligner.align_faces(photo, template, config.min_face, relative)]
        else:
            faces = [square_face(photo, b, config.margin, size) for b in aligner.detect_faces(photo, config.min_face, relative)]
        if not faces:
            hint = no_face_hint(photo)
            result.status, result.reason = "no-face", f"{relative}: no face of >= {config.min_face} px found{hint}"
    return _Prepared(result, path, photo, faces, time.perf_counter() - start)


def _save(prepared: _Prepared, cloaked: np.ndarray, inside_mask: np.ndarray, out_path: Path, fmt: str) -> None:
    """Write the cloaked upright photo in the original's stored orientation, mode and (unless PNG) format."""
    with Image.open(prepared.source) as img:
        img.load()
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
        stored = np.asarray(img)
        mode, original_format, info = img.mode, img.format, dict(img.info)
        jpeg_options: dict[str, Any] = {}
        if original_format == "JPEG" and fmt == "keep":
            jpeg_options = {"qtables": img.quantization}  # type: ignore[attr-defined]
            sampling = JpegImagePlugin.get_sampling(img)
            if sampling != -1:
                jpeg_options["subsampling"] = sampling
    rgb = to_stored_orientation(cloaked, orientation)
    mask = to_stored_orientation(inside_mask, orientation)
    if mode == "RGBA":
        # the cloak was made on the photo composited on white (load_photo): the colour changes by the change over
        # the opacity, so that the output composited on white is the cloaked photo (up to rounding and clipping)
        change = rgb.astype(np.float32) - to_stored_orientation(prepared.photo, orientation)
        opacity = stored[..., 3:].astype(np.float32) / 255.0
        colour = stored[..., :3] + np.divide(change, opacity, out=np.zeros_like(change), where=opacity > 0)
        new = np.concatenate([np.clip(np.rint(colour), 0, 255).astype(np.uint8), stored[..., 3:]], axis=-1)
    elif mode == "L":
        new = np.asarray(Image.fromarray(rgb).convert("L"))
    else:
        new = rgb
    kept: tuple[str, ...] = ("exif", "dpi")
    if mode in KEPT_MODES:
        new = np.where(mask.reshape(mask.shape + (1,) * (new.ndim - 2)), new, stored)
        kept += ("icc_profile",)
    else:
        mode = "RGB"  # outside the faces rgb already holds the original, as load_photo converted it
    options: dict[str, Any] = {k: info[k] for k in kept if k in info}
    if fmt == "png":
        out_format = "PNG"
    else:
        out_format = original_format or "PNG"
        options.update(jpeg_options)
        if out_format == "WEBP":
            options["lossless"] = True
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(new, mode=mode).save(out_path, format=out_format, **options)


def _output_name(relative: str, fmt: str) -> str:
    return str(Path(relative).with_suffix(".png")) if fmt == "png" else relative


def cloak_folder(
    generator: CloakGenerator,
    input_dir: Path,
    output_dir: Path,
    config: FullPhotoConfig | None = None,
    aligner: FaceAligner | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    checkers: Sequence[FeatureExtractor] = (),
) -> list[PhotoResult]:
    """Cloak every photo under ``input_dir`` into ``output_dir`` (same relative paths); one result per photo.

    Photos go to the generator ``config.photos_per_call`` at a time, all their faces in one call, with seed
    ``seed + call index``: the same inputs, configuration and seed give byte-identical files. Each written file
    is read back and its faces' feature change measured by every extractor of ``checkers``
    (``attacks.readback.face_changes``; none: no check).
    """
    config = config or FullPhotoConfig()
    if not config.aligned and aligner is None:
        raise ValueError("cloak_folder needs a FaceAligner to detect faces (or aligned=True for pre-aligned crops)")
    root = input_dir.resolve()
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    results: list[PhotoResult] = []
    for call, first in enumerate(range(0, len(files), config.photos_per_call)):
        chunk = files[first : first + config.photos_per_call]
        prepared = [_prepare(p, p.relative_to(input_dir).as_posix(), root, aligner, config, generator.template)
                    for p in chunk]  # fmt: skip
        merged, seconds = cloak_and_merge(generator, [p.photo for p in prepared], [p.faces for p in prepared],
                                          seed + call)  # fmt: skip
        n_faces = sum(len(p.faces) for p in prepared)
        per_face = seconds / n_faces if n_faces else 0.0
        for p, m in zip(prepared, merged, strict=True):
            start = time.perf_counter()
            if p.result.status == "cloaked":
                p.result.output = _output_name(p.result.path, config.output_format)
                try:
                    _save(p, m.photo, m.reached, output_dir / p.result.output, config.output_format)
                except (OSError, ValueError) as e:
                    p.result.status, p.result.reason, p.result.output = "error", f"{p.result.path}: cannot write ({e})", ""
                checks = _check(p, output_dir / p.result.output, checkers, aligner, config) if p.result.output else {}
                p.result.faces = [
                    FaceResult(f.reach(p.photo.shape), f.detection, image_metrics(f.crop, c), checks.get(f.detection))
                    for f, c in zip(p.faces, m.faces, strict=True)
                ]
                p.result.full = image_metrics(p.photo, m.photo)
            p.result.seconds = p.seconds + per_face * len(p.faces) + time.perf_counter() - start
            results.append(p.result)
            if progress is not None:
                progress(_progress_line(len(results), len(files), p.result))
    return results


def _check(prepared: _Prepared, written: Path, checkers: Sequence[FeatureExtractor], aligner: FaceAligner | None,
           config: FullPhotoConfig) -> dict[Box, FaceChange]:
    """The written file as a third party reads it: the change of each face, by the clean photo's detection box
    (the same detector on the same photo finds the faces the cloak was made for)."""
    if not checkers:
        return {}
    checks = face_changes(prepared.photo, load_photo(written), checkers, aligner, config.min_face,
                          str(written), aligned=config.aligned)  # fmt: skip
    return {c.box: c for c in checks}


def _progress_line(done: int, total: int, r: PhotoResult) -> str:
    if r.status != "cloaked":
        return f"[{done}/{total}] {r.path}: {r.status} ({r.reason.split(': ', 1)[-1]})"
    crop = np.mean([f.crop["dssim"] for f in r.faces])
    checks = [f.check for f in r.faces if f.check is not None]
    change = f", feature change {min(c.smallest() for c in checks):.2f} (smallest, read back)" if checks else ""
    return (f"[{done}/{total}] {r.path}: {len(r.faces)} face(s), {r.merge} merge, crop DSSIM {crop:.4f}, "
            f"photo DSSIM {r.full['dssim']:.4f}{change}, {r.seconds:.1f} s")


@dataclass(frozen=True)
class FolderSummary:
    photos: int
    cloaked_photos: int
    faces_cloaked: int
    no_face: tuple[str, ...]
    errors: tuple[str, ...]
    mean_crop_dssim: float  # over faces
    mean_photo_dssim: float  # over cloaked photos
    seconds_per_image: float  # over all photos
    merges: dict[str, int]  # merge -> photos it made
    median_change: dict[str, float]  # extractor -> median feature change after re-alignment, over checked faces
    min_change: float  # the threshold below which a face is flagged
    faces_checked: int
    barely_changed: tuple[str, ...]  # one line per flagged face (``attacks.readback.flagged_faces``)


def _labelled_checks(results: list[PhotoResult]) -> list[tuple[str, FaceChange]]:
    return [(r.path, f.check) for r in results if r.status == "cloaked" for f in r.faces if f.check is not None]


def summarise(results: list[PhotoResult], min_change: float = DEFAULT_MIN_CHANGE) -> FolderSummary:
    cloaked = [r for r in results if r.status == "cloaked"]
    crop = [f.crop["dssim"] for r in cloaked for f in r.faces]
    checks = _labelled_checks(results)
    merges: dict[str, int] = {}
    for r in cloaked:
        merges[r.merge] = merges.get(r.merge, 0) + 1
    return FolderSummary(
        photos=len(results),
        cloaked_photos=len(cloaked),
        faces_cloaked=len(crop),
        no_face=tuple(r.path for r in results if r.status == "no-face"),
        errors=tuple(r.reason for r in results if r.status == "error"),
        mean_crop_dssim=float(np.mean(crop)) if crop else float("nan"),
        mean_photo_dssim=float(np.mean([r.full["dssim"] for r in cloaked])) if cloaked else float("nan"),
        seconds_per_image=float(np.mean([r.seconds for r in results])) if results else float("nan"),
        merges=merges,
        median_change=median_changes([c for _, c in checks]),
        min_change=min_change,
        faces_checked=len(checks),
        barely_changed=tuple(flagged_faces(checks, min_change)),
    )


_CSV_COLUMNS = ("path", "status", "merge", "faces", "seconds", "dssim", "ssim", "psnr", "linf", "crop_dssim_mean",
                "crop_dssim_max", "crop_ssim_mean", "crop_psnr_mean", "crop_linf_max", "change_min", "change_median",
                "faces_barely_changed", "faces_not_redetected", "output", "reason")


def write_reports(results: list[PhotoResult], output_dir: Path, provenance: dict[str, object],
                  min_change: float = DEFAULT_MIN_CHANGE) -> tuple[Path, Path]:
    """``cloak-report.csv`` (one row per photo) and ``cloak-report.json`` (per face, summary, provenance).

    ``change_min`` / ``change_median``: the smallest and median feature change after re-alignment over the photo's
    faces and the checking extractors; a face is barely changed below ``min_change``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = output_dir / REPORT_CSV, output_dir / REPORT_JSON
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_COLUMNS)
        writer.writeheader()
        for r in results:
            crop = [face.crop for face in r.faces]
            row: dict[str, object] = {"path": r.path, "status": r.status, "merge": r.merge, "faces": len(r.faces),
                                      "seconds": round(r.seconds, 4), "output": r.output, "reason": r.reason}
            row.update({k: r.full[k] for k in ("dssim", "ssim", "psnr", "linf")} if r.full else {})
            if crop:
                row.update(crop_dssim_mean=np.mean([c["dssim"] for c in crop]), crop_dssim_max=max(c["dssim"] for c in crop),
                           crop_ssim_mean=np.mean([c["ssim"] for c in crop]), crop_psnr_mean=np.mean([c["psnr"] for c in crop]),
                           crop_linf_max=max(c["linf"] for c in crop))  # fmt: skip
            checks = [face.check for face in r.faces if face.check is not None]
            values = [v for c in checks for v in c.change.values()]
            if values:
                row.update(change_min=min(values), change_median=float(np.median(values)),
                           faces_barely_changed=sum(c.smallest() < min_change for c in checks),
                           faces_not_redetected=sum(not c.redetected for c in checks))  # fmt: skip
            writer.writerow(row)
    payload = {"provenance": provenance, "summary": asdict(summarise(results, min_change)),
               "photos": [asdict(r) for r in results]}  # fmt: skip
    json_path.write_text(json.dumps(payload, indent=1, default=float))
    return csv_path, json_path
