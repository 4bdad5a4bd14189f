"""Full photos: detect every face, cloak the crops, merge the change back into the photo as Fawkes v1.0 does.

Merge (Fawkes v1.0): per detected face box (w x h), a square crop of side max(w, h) + 30 centred on the box,
padded with the photo's mean colour where it leaves the photo, is resized to the generator's input size and
cloaked; the change (cloaked - clean crop) is resized back to the square, cut to the box, added to the photo and
the result rounded and clipped to 0..255. Pixels outside the face boxes are copied from the original, so they
are exactly unchanged. Files keep their format, size, mode (RGB, RGBA with its alpha, L) and EXIF data
including the orientation tag: the cloak is made on the upright photo and turned back to the stored
orientation. Other modes (CMYK, 16-bit, palette) cannot hold the cloak as they are: such photos are written as
the RGB image the cloak was made on, without their colour profile. Files that resolve outside the input folder
(symlinks) are refused, not read. Lossy formats are re-encoded (JPEG with the original's quantisation tables and
subsampling), which moves pixels everywhere by the codec's error; ``output_format="png"`` writes lossless PNG
instead.
With ``aligned=True`` each image is already a face crop: it is resized to the generator's input and the change
resized back over the whole image.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from fawkes_eval.align import TEMPLATES, FaceAligner, PhotoError, load_photo, no_face_hint
from fawkes_eval.data import IMAGE_SUFFIXES
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.types import CloakGenerator

KEPT_MODES = ("RGB", "RGBA", "L")
OUTPUT_FORMATS = ("keep", "png")
_ORIENTATION_TAG = 0x0112
REPORT_CSV = "cloak-report.csv"
REPORT_JSON = "cloak-report.json"
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), within the photo


@dataclass(frozen=True)
class FullPhotoConfig:
    """Every parameter of the full-photo merge."""

    margin: int = 30  # the square crop's side is max(w, h) + margin (Fawkes v1.0)
    min_face: int = 30  # smallest face side, px (Fawkes v1.0 keeps faces of >= 30 px)
    aligned: bool = False  # inputs are pre-aligned crops: no detection, the whole image is the face
    photos_per_call: int = 8  # photos whose faces go to the generator in one call (one batch, one seed)
    output_format: str = "keep"  # "keep" the input's format, or "png" (lossless)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
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
    box: Box  # the face region that was changed, in the upright photo
    crop: dict[str, float]  # dssim, ssim, psnr, linf, l2 between the clean and cloaked crop at the generator's input


@dataclass
class PhotoResult:
    path: str  # relative to the input folder
    status: str  # "cloaked", "no-face" or "error"
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


def merge_changes(photo: np.ndarray, regions: list[Region], deltas: list[np.ndarray]) -> np.ndarray:
    """Add each face's change inside its box; every pixel outside the boxes is the original's."""
    total = np.zeros(photo.shape, np.float32)
    inside = np.zeros(photo.shape[:2], bool)
    for region, delta in zip(regions, deltas, strict=True):
        left, top, right, bottom = region.box
        total[top:bottom, left:right] += change_in_box(delta, region)
        inside[top:bottom, left:right] = True
    changed = np.clip(np.rint(photo.astype(np.float32) + total), 0, 255).astype(np.uint8)
    return np.where(inside[..., None], changed, photo)


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
    regions: list[Region]
    crops: list[np.ndarray]
    seconds: float


def _prepare(path: Path, relative: str, root: Path, aligner: FaceAligner | None, config: FullPhotoConfig,
             size: int) -> _Prepared:
    start = time.perf_counter()
    result = PhotoResult(relative, "cloaked")
    empty = np.zeros((0, 0, 3), np.uint8)
    resolved = path.resolve()
    try:
        if not resolved.is_relative_to(root):
            raise PhotoError(f"{path}: refused: resolves to {resolved}, outside the input folder {root}")
        photo = load_photo(path)
    except (OSError, ValueError) as e:
        # PhotoError names the full path; the report names files relative to the input folder
        result.status, result.reason = "error", f"{relative}: {str(e).removeprefix(f'{path}: ')}"
        return _Prepared(result, path, empty, [], [], time.perf_counter() - start)
    if config.aligned:
        h, w = photo.shape[:2]
        regions = [Region(0, 0, w, h, (0, 0, w, h))]
    else:
        assert aligner is not None
        boxes = aligner.detect_faces(photo, config.min_face, relative)
        regions = [square_region(b, config.margin, photo.shape) for b in boxes]
        if not regions:
            hint = no_face_hint(photo)
            result.status, result.reason = "no-face", f"{relative}: no face of >= {config.min_face} px found{hint}"
    crops = [crop_region(photo, r, size) for r in regions]
    return _Prepared(result, path, photo, regions, crops, time.perf_counter() - start)


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
) -> list[PhotoResult]:
    """Cloak every photo under ``input_dir`` into ``output_dir`` (same relative paths); one result per photo.

    Photos go to the generator ``config.photos_per_call`` at a time, all their faces in one call, with seed
    ``seed + call index``: the same inputs, configuration and seed give byte-identical files.
    """
    config = config or FullPhotoConfig()
    if not config.aligned and aligner is None:
        raise ValueError("cloak_folder needs a FaceAligner to detect faces (or aligned=True for pre-aligned crops)")
    size = TEMPLATES[generator.template].size
    root = input_dir.resolve()
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    results: list[PhotoResult] = []
    for call, first in enumerate(range(0, len(files), config.photos_per_call)):
        chunk = files[first : first + config.photos_per_call]
        prepared = [_prepare(p, p.relative_to(input_dir).as_posix(), root, aligner, config, size) for p in chunk]
        crops = [c for p in prepared for c in p.crops]
        out_faces: np.ndarray = np.zeros((0, size, size, 3), np.float32)
        per_face = 0.0
        if crops:
            out = generator.cloak(np.stack(crops), seed=seed + call)
            out_faces, per_face = out.faces, out.seconds / len(crops)
        position = 0
        for p in prepared:
            start = time.perf_counter()
            faces = out_faces[position : position + len(p.crops)]
            position += len(p.crops)
            if p.result.status == "cloaked":
                deltas = [f - c.astype(np.float32) for f, c in zip(faces, p.crops, strict=True)]
                cloaked = merge_changes(p.photo, p.regions, deltas)
                inside = np.zeros(p.photo.shape[:2], bool)
                for r in p.regions:
                    inside[r.box[1] : r.box[3], r.box[0] : r.box[2]] = True
                p.result.output = _output_name(p.result.path, config.output_format)
                try:
                    _save(p, cloaked, inside, output_dir / p.result.output, config.output_format)
                except (OSError, ValueError) as e:
                    p.result.status, p.result.reason, p.result.output = "error", f"{p.result.path}: cannot write ({e})", ""
                p.result.faces = [FaceResult(r.box, image_metrics(c, f))
                                  for r, c, f in zip(p.regions, p.crops, faces, strict=True)]  # fmt: skip
                p.result.full = image_metrics(p.photo, cloaked)
            p.result.seconds = p.seconds + per_face * len(p.crops) + time.perf_counter() - start
            results.append(p.result)
            if progress is not None:
                progress(_progress_line(len(results), len(files), p.result))
    return results


def _progress_line(done: int, total: int, r: PhotoResult) -> str:
    if r.status != "cloaked":
        return f"[{done}/{total}] {r.path}: {r.status} ({r.reason.split(': ', 1)[-1]})"
    crop = np.mean([f.crop["dssim"] for f in r.faces])
    return (f"[{done}/{total}] {r.path}: {len(r.faces)} face(s), crop DSSIM {crop:.4f}, "
            f"photo DSSIM {r.full['dssim']:.4f}, {r.seconds:.1f} s")


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


def summarise(results: list[PhotoResult]) -> FolderSummary:
    cloaked = [r for r in results if r.status == "cloaked"]
    crop = [f.crop["dssim"] for r in cloaked for f in r.faces]
    return FolderSummary(
        photos=len(results),
        cloaked_photos=len(cloaked),
        faces_cloaked=len(crop),
        no_face=tuple(r.path for r in results if r.status == "no-face"),
        errors=tuple(r.reason for r in results if r.status == "error"),
        mean_crop_dssim=float(np.mean(crop)) if crop else float("nan"),
        mean_photo_dssim=float(np.mean([r.full["dssim"] for r in cloaked])) if cloaked else float("nan"),
        seconds_per_image=float(np.mean([r.seconds for r in results])) if results else float("nan"),
    )


_CSV_COLUMNS = ("path", "status", "faces", "seconds", "dssim", "ssim", "psnr", "linf", "crop_dssim_mean",
                "crop_dssim_max", "crop_ssim_mean", "crop_psnr_mean", "crop_linf_max", "output", "reason")


def write_reports(results: list[PhotoResult], output_dir: Path, provenance: dict[str, object]) -> tuple[Path, Path]:
    """``cloak-report.csv`` (one row per photo) and ``cloak-report.json`` (per face, summary, provenance)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = output_dir / REPORT_CSV, output_dir / REPORT_JSON
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_COLUMNS)
        writer.writeheader()
        for r in results:
            crop = [face.crop for face in r.faces]
            row: dict[str, object] = {"path": r.path, "status": r.status, "faces": len(r.faces),
                                      "seconds": round(r.seconds, 4), "output": r.output, "reason": r.reason}
            row.update({k: r.full[k] for k in ("dssim", "ssim", "psnr", "linf")} if r.full else {})
            if crop:
                row.update(crop_dssim_mean=np.mean([c["dssim"] for c in crop]), crop_dssim_max=max(c["dssim"] for c in crop),
                           crop_ssim_mean=np.mean([c["ssim"] for c in crop]), crop_psnr_mean=np.mean([c["psnr"] for c in crop]),
                           crop_linf_max=max(c["linf"] for c in crop))  # fmt: skip
            writer.writerow(row)
    payload = {"provenance": provenance, "summary": asdict(summarise(results)), "photos": [asdict(r) for r in results]}
    json_path.write_text(json.dumps(payload, indent=1, default=float))
    return csv_path, json_path
