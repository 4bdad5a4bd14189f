"""External cloaks: photos cloaked by any tool (Fawkes' own binary, a web service), imported as clean/cloaked pairs."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fawkes_eval.align import TEMPLATES, FaceAligner, content_key, default_cache_dir, load_photo, warp_photo_to_crop
from fawkes_eval.data import IMAGE_SUFFIXES
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.types import CloakOutput

# Fawkes' binary writes <stem>_cloaked.<ext>; a cloaked file matches the clean one with or without this suffix.
CLOAKED_SUFFIX = "_cloaked"


@dataclass(frozen=True)
class ExternalConfig:
    """Where the pairs are and how resized files are treated."""

    clean_dir: str
    cloaked_dir: str
    accept_resized: bool = False  # resize a cloaked photo of another size back to the clean one's, instead of leaving it out
    tool: str = ""  # what made the cloaks (free text, logged with results), e.g. "fawkes 1.0.2 binary, mode mid"

    def __post_init__(self) -> None:
        for name in ("clean_dir", "cloaked_dir"):
            if not Path(getattr(self, name)).is_dir():
                raise ValueError(f"ExternalConfig.{name}: {getattr(self, name)!r} is not a directory")


@dataclass(frozen=True)
class ExternalPair:
    relative: str  # the clean file's path relative to clean_dir
    clean: Path
    cloaked: Path
    clean_size: tuple[int, int]  # (width, height) after EXIF orientation
    cloaked_size: tuple[int, int]


@dataclass(frozen=True)
class PairingReport:
    """What pairing found: usable pairs, and every file that could not be used, by relative path."""

    pairs: tuple[ExternalPair, ...]
    missing_cloaked: tuple[str, ...]  # clean files with no cloaked counterpart
    unmatched_cloaked: tuple[str, ...]  # cloaked files with no clean counterpart (or two cloaked files for one clean)
    resized: tuple[str, ...]  # pairs whose cloaked photo has another size than the clean one
    unreadable: tuple[str, ...]  # "path: reason"

    def summary(self) -> str:
        parts = [f"{len(self.pairs)} pairs"]
        for label, items in (("clean without cloaked", self.missing_cloaked), ("cloaked without clean",
                             self.unmatched_cloaked), ("resized", self.resized), ("unreadable", self.unreadable)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items) - 5} more)" if len(items) > 5 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        return "; ".join(parts)


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _match_key(relative: Path) -> str:
    stem = relative.stem.removesuffix(CLOAKED_SUFFIX)
    return (relative.parent / stem).as_posix()


def _oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) as ``load_photo`` returns it: EXIF orientations 5 to 8 swap the two."""
    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
        w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def pair_files(clean_dir: Path, cloaked_dir: Path, accept_resized: bool = False) -> PairingReport:
    """Match cloaked files to clean ones by relative path (extension free, ``_cloaked`` suffix allowed)."""
    clean_files = {_match_key(p.relative_to(clean_dir)): p for p in _images(clean_dir)}
    by_key: dict[str, list[Path]] = {}
    for p in _images(cloaked_dir):
        by_key.setdefault(_match_key(p.relative_to(cloaked_dir)), []).append(p)
    pairs: list[ExternalPair] = []
    missing: list[str] = []
    unmatched: list[str] = []
    resized: list[str] = []
    unreadable: list[str] = []
    for key, cloaked_files in sorted(by_key.items()):
        if key not in clean_files or len(cloaked_files) > 1:
            unmatched.extend(p.relative_to(cloaked_dir).as_posix() for p in cloaked_files)
    for key, clean in sorted(clean_files.items()):
        relative = clean.relative_to(clean_dir).as_posix()
        candidates = by_key.get(key, [])
        if len(candidates) != 1:
            missing.append(relative)
            continue
        try:
            clean_size, cloaked_size = _oriented_size(clean), _oriented_size(candidates[0])
        except OSError as e:
            unreadable.append(f"{relative}: {e}")
            continue
        if clean_size != cloaked_size:
            resized.append(f"{relative} ({clean_size[0]}x{clean_size[1]} -> {cloaked_size[0]}x{cloaked_size[1]})")
            if not accept_resized:
                continue
        pairs.append(ExternalPair(relative, clean, candidates[0], clean_size, cloaked_size))
    return PairingReport(tuple(pairs), tuple(missing), tuple(unmatched), tuple(resized), tuple(unreadable))


def load_cloaked(pair: ExternalPair) -> np.ndarray:
    """The pair's cloaked photo (uint8 RGB), resized (bilinear) to the clean one's size where it differs."""
    photo = load_photo(pair.cloaked)
    if pair.cloaked_size != pair.clean_size:  # only accepted ones get here
        photo = np.asarray(Image.fromarray(photo).resize(pair.clean_size, Image.Resampling.BILINEAR))
    return photo


class ExternalCloak:
    """Cloaks made by another tool, served through the ``CloakGenerator`` protocol.

    Source: any tool that writes cloaked copies of photos (Fawkes' binary, a web service); this class adds no
    perturbation of its own.
    Method: files of ``clean_dir`` and ``cloaked_dir`` are paired by relative path (``PairingReport``: unmatched
    and resized files are listed in ``pairing``). ``cloak(faces)`` looks each aligned clean face up by its bytes
    among the clean photos aligned at ``template`` with the same aligner, and returns the cloaked photo cropped
    through the clean photo's alignment, so the tool's change is measured where the face is. A face that is not
    among the clean photos is an error naming how many were not found.
    Separate interface for runners that substitute whole photos (the change outside the crop is kept):
    ``cloaked_photo_for(photo)`` returns the cloaked photo paired with a clean photo given by its pixels.
    Distance: DSSIM on the aligned crop, measured; no budget (the tool's own).
    Arguments: ``template``: alignment template of the faces it will be given; ``clean_dir``, ``cloaked_dir``,
    ``accept_resized``, ``tool``: see ``ExternalConfig`` (or pass ``config``); ``aligner``: a ``FaceAligner``.
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed)`` -> ``CloakOutput(faces float32 (N, S, S, 3) in 0..255,
    dssim (N,), seconds)``; the seed is ignored (the files are what they are).
    Example: ``ExternalCloak("dlib-150", clean_dir="photos", cloaked_dir="photos-fawkes")``.
    """

    def __init__(
        self,
        template: str = "dlib-150",
        clean_dir: str | None = None,
        cloaked_dir: str | None = None,
        accept_resized: bool = False,
        tool: str = "",
        config: ExternalConfig | None = None,
        aligner: FaceAligner | None = None,
    ) -> None:
        if template not in TEMPLATES:
            raise ValueError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
        if config is None:
            if clean_dir is None or cloaked_dir is None:
                raise ValueError("external needs clean_dir and cloaked_dir: the folders of clean photos and of "
                                 "their cloaked copies, matched by relative path")
            config = ExternalConfig(clean_dir, cloaked_dir, accept_resized, tool)
        self.config = config
        self.template = template
        self.name = "external"
        self.pairing = pair_files(Path(config.clean_dir), Path(config.cloaked_dir), config.accept_resized)
        self._aligner = aligner
        self._crops: dict[str, np.ndarray] | None = None  # sha256 of the clean crop -> cloaked crop (float32)
        self._photos: dict[str, ExternalPair] | None = None  # content key of the clean photo -> its pair

    def params(self) -> dict[str, object]:
        return {
            "clean_dir": self.config.clean_dir,
            "cloaked_dir": self.config.cloaked_dir,
            "accept_resized": self.config.accept_resized,
            "tool": self.config.tool,
            "template": self.template,
            "pairs": len(self.pairing.pairs),
            "pairing": self.pairing.summary(),
        }

    def _index(self) -> dict[str, np.ndarray]:
        if self._crops is None:
            aligner = self._aligner or FaceAligner(cache_dir=default_cache_dir())
            self._crops, self._photos = {}, {}
            for pair in self.pairing.pairs:
                clean = load_photo(pair.clean)
                self._photos[content_key(clean)] = pair
                face = aligner.align(clean, self.template, str(pair.clean))
                cloaked = warp_photo_to_crop(load_cloaked(pair), face.matrix, TEMPLATES[self.template].size)
                self._crops[hashlib.sha256(face.crop.tobytes()).hexdigest()] = cloaked.astype(np.float32)
        return self._crops

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        start = time.perf_counter()
        size = TEMPLATES[self.template].size
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f"ExternalCloak.cloak expects uint8 faces (N, {size}, {size}, 3), got {faces.dtype} "
                             f"{faces.shape}")
        index = self._index()
        found = [index.get(hashlib.sha256(face.tobytes()).hexdigest()) for face in faces]
        missing = [i for i, crop in enumerate(found) if crop is None]
        if missing:
            raise ValueError(f"external: {len(missing)} of {len(faces)} faces are not among the paired clean photos "
                             f"of {self.config.clean_dir} ({self.pairing.summary()})")
        crops = [c for c in found if c is not None]
        out = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.float32)
        measured = np.array([image_metrics(f, c)["dssim"] for f, c in zip(faces, out, strict=True)], np.float32)
        return CloakOutput(out, measured, time.perf_counter() - start)

    def cloaked_photo_for(self, photo: np.ndarray, source: str = "<array>") -> np.ndarray:
        """The cloaked photo (uint8 RGB, the clean photo's size) paired with this clean photo's pixels."""
        self._index()
        assert self._photos is not None
        pair = self._photos.get(content_key(photo))
        if pair is None:
            raise ValueError(f"{source}: not among the paired clean photos of {self.config.clean_dir}")
        return load_cloaked(pair)

