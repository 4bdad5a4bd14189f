"""Face detection and alignment: a detector (dlib HOG by default, or any ``FaceDetector``), dlib landmarks,
templates, cached on disk by content hash; or photos that are already crops on a template (``aligned=``).

Each extractor declares a template; ``FaceAligner.align(photo, template)`` returns the aligned crop together
with the affine matrix that produced it, so a change made to the crop (a cloak) can be warped back into the
photo with ``warp_crop_to_photo``.

Detectors (``DETECTORS`` registry): ``dlib-hog`` (here, the default) finds boxes only, so every template comes from
dlib's landmarks inside the box; a detector that also gives the 5 ArcFace keypoints (``scrfd``, registered by
``recognizers``) gives the ArcFace templates directly from them (the similarity transform InsightFace's
``norm_crop`` uses), and the dlib chip from dlib's 5-point landmarks inside its box.

Pre-aligned datasets: ``FaceAligner(aligned="arcface-112")`` treats every photo as a square crop on that template.
Nothing is detected and no photo is lost; a crop for another template is derived by the fixed transform between
the two templates (``template_transform``), and what falls outside the given crop is filled with black and its
share recorded (``FaceAligner.provenance()``).

Templates:
- ``dlib-150``: dlib's own face chip (``get_face_chip_details(shape, 150, padding=0.25)``) from the 5-point
  predictor, exactly the input dlib's ResNet was trained on.
- ``arcface-112`` / ``arcface-224``: the 5-point ArcFace reference (eye centres, nose tip, mouth corners) at
  112 px and scaled x2 at 224 px, from dlib's 68-point predictor (trained on iBUG 300-W: research use only).
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from fawkes_eval.types import FaceDetector

ALIGNER_VERSION = "dlib-hog-v1"  # part of every cache key: bump when alignment changes

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# The same five points (eye centres, nose tip, mouth corners from dlib's 68 landmarks) where they lie, on average, in
# dlib's 150 px chip (5-point predictor, padding 0.25): measured over the 100 photos of the bundled LFW sample
# (per-photo spread 1.4 px for the eyes, 5-7 px for nose and mouth; tests/test_detectors.py re-measures it).
DLIB_150_ARCFACE_POINTS = np.array(
    [[46.92, 46.26], [100.03, 46.43], [73.82, 75.75], [49.88, 104.30], [98.03, 104.01]]
)


@dataclass(frozen=True)
class Template:
    name: str
    size: int
    landmarks: str  # "5" or "68": which dlib shape predictor it needs
    description: str


TEMPLATES: dict[str, Template] = {
    "dlib-150": Template("dlib-150", 150, "5", "dlib face chip, 150 px, padding 0.25 (5-point predictor)"),
    "arcface-112": Template("arcface-112", 112, "68", "ArcFace 5-point reference, 112 px"),
    "arcface-224": Template("arcface-224", 224, "68", "ArcFace 5-point reference scaled x2, 224 px"),
}


def template_points(template: str) -> np.ndarray:
    """The five ArcFace reference points in ``template``'s crop pixels: how templates relate to each other."""
    if template == "dlib-150":
        return DLIB_150_ARCFACE_POINTS
    return ARCFACE_112 * TEMPLATES[template].size / 112.0


def template_transform(source: str, target: str, source_size: int | None = None) -> np.ndarray:
    """(2, 3) matrix from a crop on ``source`` (``source_size`` px square; default the template's size) to a crop on
    ``target``: the similarity mapping the one's reference points onto the other's."""
    size = source_size if source_size is not None else TEMPLATES[source].size

    def to_reference(template: str, scale: float) -> np.ndarray:  # crop pixels -> arcface-112 pixels, (3, 3)
        return np.vstack([similarity_transform(template_points(template) * scale, ARCFACE_112), [0.0, 0.0, 1.0]])

    # through the one reference, so that going there and back is the identity
    return (np.linalg.inv(to_reference(target, 1.0)) @ to_reference(source, size / TEMPLATES[source].size))[:2]


class NoFaceError(ValueError):
    """No face was found in a photo; the message names the photo."""


class NotACropError(NoFaceError):
    """A photo of a pre-aligned dataset that cannot be a crop on its template (not square); the message names it."""


@dataclass(frozen=True)
class DetectedFace:
    """One detection: box (left, top, right, bottom) in photo pixels, score, and the 5 ArcFace keypoints (eye centres
    left then right in the image, nose tip, mouth corners left then right; (5, 2) photo pixels) when the detector
    gives them, else None."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None


@dataclass(frozen=True)
class AlignedFace:
    crop: np.ndarray  # uint8 (S, S, 3) RGB
    matrix: np.ndarray  # float64 (2, 3): photo pixel (x, y, 1) -> crop pixel (u, v), pixel centres at integers
    box: tuple[int, int, int, int]  # detection (left, top, right, bottom) in the photo
    padded: float = 0.0  # pre-aligned input only: share of this crop lying outside the given crop (filled black)


def content_key(pixels: np.ndarray) -> str:
    """Hash of decoded pixels and their shape: the cache key of a photo (clean or cloaked)."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` points onto ``dst``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s0.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _pil_coefficients(out_to_in: np.ndarray) -> tuple[float, ...]:
    # PIL samples at pixel centres (x + 0.5); our matrices put centres at integers.
    a, b, c = out_to_in[0]
    d, e, f = out_to_in[1]
    return (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))


def warp_photo_to_crop(photo: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear crop of a uint8 RGB photo through ``matrix`` (photo -> crop)."""
    coeffs = _pil_coefficients(invert_affine(matrix))
    img = Image.fromarray(photo).transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(img)


def warp_crop_to_photo(delta: np.ndarray, matrix: np.ndarray, photo_shape: tuple[int, ...]) -> np.ndarray:
    """Warp a float (S, S, C) change made on a crop back into photo space; zero outside the crop's footprint."""
    coeffs = _pil_coefficients(matrix)
    height, width = photo_shape[:2]
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(delta[..., c], dtype=np.float32), mode="F").transform(
                (width, height), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0.0
            )
        )
        for c in range(delta.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _dlib_chip_matrix(chip: Any) -> np.ndarray:
    """dlib's get_mapping_to_chip: the rotated detail rectangle's corners onto the chip's corners."""
    rect = chip.rect
    angle = chip.angle
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([(rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    src = (corners - centre) @ rot.T + centre
    dst = np.array([[0.0, 0.0], [chip.cols - 1, 0.0], [chip.cols - 1, chip.rows - 1]])
    return similarity_transform(src, dst)


def _arcface_points(shape68: Any) -> np.ndarray:
    pts = np.array([[p.x, p.y] for p in shape68.parts()], dtype=np.float64)
    return np.array([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


def _check_photo(photo: np.ndarray, source: str) -> None:
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"{source}: expected a uint8 RGB photo, got {photo.dtype} {photo.shape}")


def no_face_hint(photo: np.ndarray) -> str:
    height, width = photo.shape[:2]
    if min(height, width) < 40:
        return f" (image is only {width}x{height} pixels; the detector needs faces of about 40 px or more)"
    if height == width and height in {t.size for t in TEMPLATES.values()}:
        return f" ({width}x{height}: this looks like a pre-aligned face crop; pass --aligned to skip detection)"
    return ""


def default_cache_dir() -> Path:
    return Path(os.environ.get("FAWKES_EVAL_CACHE", ".fawkes-eval-cache"))


class DlibHogDetector:
    """dlib's HOG frontal face detector (``upsample`` times upsampled): boxes, no keypoints. Thread-safe."""

    name = "dlib-hog"

    def __init__(self, upsample: int = 1) -> None:
        import dlib

        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()

    def detect(self, photo: np.ndarray) -> list[DetectedFace]:
        with self._lock:
            boxes, scores, _ = self._detector.run(photo, self.upsample)
        return [DetectedFace((b.left(), b.top(), b.right(), b.bottom()), float(s)) for b, s in zip(boxes, scores,
                                                                                                   strict=True)]


def create_detector(name: str) -> FaceDetector:
    """A detector by its registered name (``dlib-hog``, ``scrfd``, ...); the CLI loads the rooms first."""
    from fawkes_eval.registry import DETECTORS

    return DETECTORS.create(name)


def _pixels_outside(matrix: np.ndarray, source_shape: tuple[int, ...], size: int) -> float:
    """Share of a ``size`` px crop made through ``matrix`` whose pixels sample outside the source image."""
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).reshape(-1, 2).astype(np.float64)
    back = invert_affine(matrix)
    src = grid @ back[:, :2].T + back[:, 2]
    height, width = source_shape[:2]
    inside = (src[:, 0] >= -0.5) & (src[:, 0] <= width - 0.5) & (src[:, 1] >= -0.5) & (src[:, 1] <= height - 0.5)
    return float(1.0 - inside.mean())


class FaceAligner:
    """Face detection, landmarks and template alignment, with an on-disk cache keyed by pixel content.

    Arguments: ``detector`` (a ``FaceDetector``, or a registered name; default dlib HOG with ``upsample``);
    ``aligned`` (a template name: the photos are already crops on it, see the module docstring).
    Among several faces, the one whose box centre is nearest the photo centre is used (LFW labels the centred
    face). Thread-safe: dlib's predictors are shared behind a lock.
    Example: ``FaceAligner(cache_dir, detector="scrfd")`` (after ``load_rooms()``), ``FaceAligner(aligned="arcface-112")``.
    """

    def __init__(self, cache_dir: Path | None = None, upsample: int = 1, detector: FaceDetector | str | None = None,
                 aligned: str | None = None) -> None:
        import dlib
        import face_recognition_models as frm

        if aligned is not None and aligned not in TEMPLATES:
            raise KeyError(f"unknown pre-aligned template {aligned!r}; known: {', '.join(TEMPLATES)}")
        if aligned is not None and detector is not None:
            raise ValueError("a pre-aligned dataset is never detected: give aligned or detector, not both")
        self.cache_dir = cache_dir
        self.upsample = upsample
        self.aligned = aligned
        if detector is None or detector == DlibHogDetector.name:
            self.detector: FaceDetector = DlibHogDetector(upsample)
        else:
            self.detector = create_detector(detector) if isinstance(detector, str) else detector
        self._predictors = {
            "5": dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            "68": dlib.shape_predictor(frm.pose_predictor_model_location()),
        }
        self._dlib = dlib
        self._lock = threading.Lock()
        self._boxes: dict[str, DetectedFace | None] = {}
        self._padded: dict[str, float] = {}  # template -> largest share padded, for pre-aligned crops
        self._siblings: dict[str, FaceAligner] = {}  # by detector name, see ``for_detector``

    def for_detector(self, detector: str | None) -> FaceAligner:
        """The aligner a victim whose own pipeline detects with ``detector`` (``ExtractorInfo.detector``) uses on this
        aligner's photos: this one when ``detector`` is None, when it already detects with it, or when its photos
        are pre-aligned crops (nothing is detected); else one with that detector and the same cache directory,
        made once and reused. Cache keys name the detector, so its crops never mix with this one's."""
        if detector is None or self.aligned is not None or detector == self.detector.name:
            return self
        with self._lock:
            if detector not in self._siblings:
                self._siblings[detector] = FaceAligner(self.cache_dir, self.upsample, detector=detector)
            return self._siblings[detector]

    def provenance(self) -> dict[str, object]:
        """How faces were found, for result provenance: the detector, or the pre-aligned template and the largest
        share of each derived template's crop that lay outside the given crops (padded black)."""
        if self.aligned is not None:
            return {"detector": None, "aligned": self.aligned, "padded": dict(sorted(self._padded.items()))}
        return {"detector": self.detector.name, "aligned": None}

    def align(self, photo: np.ndarray, template: str, source: str = "<array>") -> AlignedFace:
        if template not in TEMPLATES:
            raise KeyError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
        if self.aligned is not None:
            return self._from_crop(photo, template, source)
        photo_key = content_key(photo)
        by = f"u{self.upsample}" if self.detector.name == DlibHogDetector.name else self.detector.name
        key = f"{photo_key}-{template}-{ALIGNER_VERSION}-{by}"
        cached = self._read_cache(key)
        if cached is not None:
            return cached
        face = self._align_uncached(photo, TEMPLATES[template], source, photo_key)
        self._write_cache(key, face)
        return face

    def detect_faces(self, photo: np.ndarray, min_size: int = 30, source: str = "<array>") -> list[tuple[int, int, int, int]]:
        """Every face the detector finds with both sides >= ``min_size`` px, as (left, top, right, bottom), top to
        bottom then left to right; a box may reach past the photo's border."""
        _check_photo(photo, source)
        found = []
        for face in self.detector.detect(photo):
            left, top, right, bottom = (int(round(v)) for v in face.box)
            if min(right - left, bottom - top) >= min_size:
                found.append((left, top, right, bottom))
        return sorted(found, key=lambda b: (b[1], b[0]))

    def align_faces(self, photo: np.ndarray, template: str, min_size: int = 30, source: str = "<array>") -> list[AlignedFace]:
        """Every face ``detect_faces`` finds, each aligned at ``template``, in the same order (not cached)."""
        if template not in TEMPLATES:
            raise KeyError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
        _check_photo(photo, source)
        with self._lock:
            found = [f for f in self.detector.detect(photo)
                     if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_size]
            faces = [self._align_detected(photo, face, TEMPLATES[template]) for face in found]
        return sorted(faces, key=lambda f: (f.box[1], f.box[0]))

    def _centre_face(self, photo: np.ndarray, photo_key: str) -> DetectedFace | None:
        """The detection nearest the photo centre, or None; memoised so each photo is detected once."""
        if photo_key not in self._boxes:
            faces = self.detector.detect(photo)
            cy, cx = (photo.shape[0] - 1) / 2.0, (photo.shape[1] - 1) / 2.0

            def off_centre(face: DetectedFace) -> float:
                left, top, right, bottom = face.box
                return float(((left + right) / 2.0 - cx) ** 2 + ((top + bottom) / 2.0 - cy) ** 2)

            self._boxes[photo_key] = min(faces, key=off_centre) if faces else None
        return self._boxes[photo_key]

    def _align_uncached(self, photo: np.ndarray, template: Template, source: str, photo_key: str) -> AlignedFace:
        _check_photo(photo, source)
        with self._lock:
            face = self._centre_face(photo, photo_key)
            if face is None:
                raise NoFaceError(f"{source}: no face found{no_face_hint(photo)}")
            return self._align_detected(photo, face, template)

    def _align_detected(self, photo: np.ndarray, face: DetectedFace, template: Template) -> AlignedFace:
        """The crop at ``template`` of one detection: from its keypoints where the detector gives them and the
        template is an ArcFace one, else from dlib's landmarks inside its box; the caller holds the lock."""
        box = tuple(int(round(v)) for v in face.box)
        if template.landmarks == "68" and face.keypoints is not None:
            matrix = similarity_transform(face.keypoints, ARCFACE_112 * template.size / 112.0)
        else:
            shape = self._predictors[template.landmarks](photo, self._dlib.rectangle(*box))
            if template.landmarks == "5":
                matrix = _dlib_chip_matrix(self._dlib.get_face_chip_details(shape, template.size, 0.25))
            else:
                matrix = similarity_transform(_arcface_points(shape), ARCFACE_112 * template.size / 112.0)
        crop = warp_photo_to_crop(photo, matrix, template.size)
        return AlignedFace(crop, matrix, (box[0], box[1], box[2], box[3]))

    def _from_crop(self, photo: np.ndarray, template: str, source: str) -> AlignedFace:
        """A pre-aligned crop as it is, or another template's crop derived from it by the templates' transform."""
        _check_photo(photo, source)
        height, width = photo.shape[:2]
        assert self.aligned is not None
        if height != width:
            raise NotACropError(f"{source}: {width}x{height} is not a square crop, so it cannot be a pre-aligned "
                                f"{self.aligned} face (drop --aligned to detect faces in it)")
        matrix = template_transform(self.aligned, template, source_size=width)
        size = TEMPLATES[template].size
        if template == self.aligned and width == size:
            crop = np.ascontiguousarray(photo)
            padded = 0.0
        else:
            crop = warp_photo_to_crop(photo, matrix, size)
            padded = _pixels_outside(matrix, photo.shape, size)
        with self._lock:
            self._padded[template] = max(padded, self._padded.get(template, 0.0))
        return AlignedFace(crop, matrix, (0, 0, width, height), padded)

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / "align" / key[:2] / f"{key}.npz"

    def _read_cache(self, key: str) -> AlignedFace | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                crop, matrix, box, digest = z["crop"], z["matrix"], z["box"], str(z["digest"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # unreadable entry: recompute rather than trust it
        if hashlib.sha256(crop.tobytes() + matrix.tobytes()).hexdigest() != digest:
            return None
        b = [int(v) for v in box]
        return AlignedFace(crop, matrix, (b[0], b[1], b[2], b[3]))

    def _write_cache(self, key: str, face: AlignedFace) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(face.crop.tobytes() + face.matrix.tobytes()).hexdigest()
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, crop=face.crop, matrix=face.matrix, box=np.array(face.box), digest=np.array(digest))
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written entry under the real name


MAX_PHOTO_PIXELS = 50_000_000  # a phone photo is ~12-50 MP; anything larger is refused before decoding


class PhotoError(ValueError):
    """A file that cannot be used as a photo; the message names the file and the reason."""


def load_photo(path: Path) -> np.ndarray:
    """Decode an image file as uint8 RGB, honouring EXIF orientation.

    Greyscale, CMYK, palette, alpha (composited on white) and 16-bit images are converted; empty, truncated,
    non-image and oversized files (checked from the header, before any pixel is allocated) raise PhotoError.
    """
    from PIL import ImageOps, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            raise PhotoError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PHOTO_PIXELS:
                raise PhotoError(
                    f"{path}: header claims {width}x{height} pixels, over the {MAX_PHOTO_PIXELS // 1_000_000} MP "
                    "limit (possible decompression bomb); refused without decoding"
                )
            img.load()
            return _to_rgb8(ImageOps.exif_transpose(img))
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise PhotoError(f"{path}: not a readable image (unknown format or not an image file)") from None
    except Image.DecompressionBombError as e:
        raise PhotoError(f"{path}: refused without decoding, possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PhotoError(f"{path}: cannot decode image ({e})") from None


class LazyPhotos(Sequence[np.ndarray]):
    """Photos made one at a time on access (decoded from a file, transformed, ...), so that a dataset of any size
    is never held in memory as pixels. Subclasses give ``__len__`` and ``photo``."""

    def photo(self, index: int) -> np.ndarray:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        positions = range(len(self))[index]  # also checks bounds and resolves negative indices
        return [self.photo(i) for i in positions] if isinstance(positions, range) else self.photo(positions)


class PhotoFiles(LazyPhotos):
    """Photo files, decoded (``load_photo``) on each access."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def photo(self, index: int) -> np.ndarray:
        return load_photo(Path(self.paths[index]))


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: PIL's convert("RGB") would clip at 255, so rescale to 8 bits first
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        grey = np.clip(np.rint(wide / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))
