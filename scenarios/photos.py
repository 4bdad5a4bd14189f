"""Photos in, photos out: cloak the aligned face and merge the change back; embed photos for a victim.

The cloak works on the crop of its own template; the change is warped back into the photo, which is then
rounded to 8-bit pixels, as a user would upload it. This is the ``aligned`` merge of the ``cloak`` verb, made
by the same code (``attacks.full_photo.cloak_and_merge``); here only the face nearest the photo's centre (the
one LFW labels) is cloaked. A generator that serves whole photos made by another tool (``external``) gives its
files as they are, read back from disk (``substitute_photos``). Each victim detects and aligns the (cloaked)
photo itself, as a third party would: with its own pipeline's detector where it declares one
(``ExtractorInfo.detector``, e.g. SCRFD for InsightFace's models), else with the dataset's (``EmbeddingCache``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks.full_photo import aligned_face, cloak_and_merge
from fawkes_eval.align import TEMPLATES, AlignedFace, FaceAligner, NoFaceError, content_key, warp_photo_to_crop
from fawkes_eval.console import progress
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.types import CloakGenerator, FeatureExtractor


@dataclass
class CloakedPhoto:
    source: str
    photo: np.ndarray  # uint8 cloaked photo, same size as the original
    crop_clean: np.ndarray  # uint8 aligned crop at the generator's template
    crop_cloaked: np.ndarray  # float32 crop as the generator produced it
    crop_dssim: float  # measured by the generator on its crop
    photo_metrics: dict[str, float]  # dssim, ssim, psnr, linf, l2 on the full photo after 8-bit rounding


def cloak_photos(
    generator: CloakGenerator,
    aligner: FaceAligner,
    photos: list[np.ndarray],
    sources: list[str],
    seed: int,
    users: Sequence[str] | None = None,
) -> tuple[list[CloakedPhoto], float]:
    """Cloak each photo's centre face; returns the cloaked photos and the generator's seconds. ``users``: each
    photo's user, for generators that declared ``per_user`` (a target per user)."""
    faces = [aligner.align(p, generator.template, s) for p, s in zip(photos, sources, strict=True)]
    merged, seconds = cloak_and_merge(generator, photos, [[aligned_face(f)] for f in faces], seed,
                                      users=None if users is None else [[u] for u in users])  # fmt: skip
    cloaked = []
    for photo, face, m, source in zip(photos, faces, merged, sources, strict=True):
        cloaked.append(CloakedPhoto(source, m.photo, face.crop, m.faces[0], float(m.dssim[0]),
                                    image_metrics(photo, m.photo)))  # fmt: skip
    return cloaked, seconds


class EmbeddingCache:
    """Embeddings of photos by one extractor, keyed by pixel content (clean and cloaked photos alike).

    ``aligner`` is the dataset's. An extractor that declares its own pipeline's detector (``info.detector``) detects
    every photo with it (``aligner.for_detector``: same cache directory, made once per detector), unless the
    dataset is pre-aligned; where that detector finds no face, the dataset aligner's face in the same photo is used
    and the photo counted in ``detector_fallbacks`` (content keys). ``redetect_failures`` counts the photos in which
    neither finds a face and the ``fallbacks`` photo's landmarks are used (see ``embed``).
    """

    def __init__(self, extractor: FeatureExtractor, aligner: FaceAligner) -> None:
        self.extractor = extractor
        self.aligner = aligner
        self.victim_aligner = aligner.for_detector(extractor.info.detector)
        self._store: dict[str, np.ndarray] = {}
        self.redetect_failures = 0
        self.detector_fallbacks: set[str] = set()

    def embed(
        self,
        photos: Sequence[np.ndarray],
        sources: Sequence[str],
        fallbacks: Sequence[np.ndarray] | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Embed photos; where no face is found again, align with the ``fallbacks`` photo's landmarks.

        Fallbacks matter for cloaked photos: a cloak may hide the face from the detector, which a tracker
        could sidestep by using the landmarks of the original upload. Photos are read one at a time and
        embedded ``batch_size`` crops at a time, so ``photos`` may be a lazy sequence of any length.
        """
        keys = self._embed_all(photos, sources, fallbacks, batch_size, skip_faceless=False)
        return np.stack([self._store[k] for k in keys if k is not None])

    def embed_found(
        self, photos: Sequence[np.ndarray], sources: Sequence[str], batch_size: int = 256
    ) -> tuple[np.ndarray, list[int]]:
        """Embed the photos in which a face is found (others, e.g. an extra distractor gallery's misses, are left
        out); returns their embeddings and their positions in ``photos``. Read and embedded as ``embed`` does."""
        keys = self._embed_all(photos, sources, None, batch_size, skip_faceless=True)
        found = [i for i, k in enumerate(keys) if k is not None]
        vectors = [self._store[k] for k in keys if k is not None]
        dim = self.extractor.info.embedding_dim
        return (np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)), found

    def _embed_all(
        self, photos: Sequence[np.ndarray], sources: Sequence[str], fallbacks: Sequence[np.ndarray] | None,
        batch_size: int, skip_faceless: bool,
    ) -> list[str | None]:
        """Each photo's content key once its embedding is stored (None: no face, when ``skip_faceless``)."""
        if len(photos) != len(sources):
            raise ValueError(f"embed: {len(photos)} photos but {len(sources)} sources")
        template = self.extractor.info.template
        keys: list[str | None] = []
        pending: dict[str, np.ndarray] = {}  # content key -> aligned crop, not yet embedded
        bar = progress(None, f"embedding with {self.extractor.info.name}", total=len(sources), unit="photo")
        for i, source in enumerate(sources):
            bar.update(1)
            photo = photos[i]
            key = content_key(photo)
            if key in self._store or key in pending:
                keys.append(key)
                continue
            try:
                face = self._align(photo, template, source, counted=key)
            except NoFaceError:
                if skip_faceless:
                    keys.append(None)
                    continue
                if fallbacks is None:
                    raise
                self.redetect_failures += 1
                reference = fallbacks[i]
                face = self._aligned_like(photo, self._align(reference, template, source, counted=key))
            keys.append(key)
            pending[key] = face.crop
            if len(pending) >= batch_size:
                self._embed(pending)
        self._embed(pending)
        bar.close()
        return keys

    def _align(self, photo: np.ndarray, template: str, source: str, counted: str) -> AlignedFace:
        """The face as the victim's detector finds it in ``photo``, else as the dataset's does; in the second case the
        embedded photo (content key ``counted``: ``photo``'s own, or the cloaked photo it stands in for) is counted
        as a detector fallback."""
        if self.victim_aligner is self.aligner:
            return self.aligner.align(photo, template, source)
        try:
            return self.victim_aligner.align(photo, template, source)
        except NoFaceError:
            face = self.aligner.align(photo, template, source)
            self.detector_fallbacks.add(counted)
            return face

    def _embed(self, pending: dict[str, np.ndarray]) -> None:
        if pending:
            vectors = self.extractor.embed(np.stack(list(pending.values())))
            self._store.update(zip(pending, vectors, strict=True))
            pending.clear()

    def _aligned_like(self, photo: np.ndarray, reference: AlignedFace) -> AlignedFace:
        crop = warp_photo_to_crop(photo, reference.matrix, reference.crop.shape[0])
        return AlignedFace(crop, reference.matrix, reference.box)


def substitute_photos(
    generator: Any, aligner: FaceAligner, photos: list[np.ndarray], sources: list[str]
) -> tuple[list[CloakedPhoto | None], float]:
    """For generators that declared ``whole_photos`` (cloaks made by another tool): each photo is replaced by its
    cloaked copy as the tool wrote it (``generator.cloaked_photo_for``); None where the tool left no copy.
    The crop measurements use the clean photo's alignment, so the tool's change is measured where the face is."""
    start = time.perf_counter()
    size = TEMPLATES[generator.template].size
    out: list[CloakedPhoto | None] = []
    for photo, source in zip(photos, sources, strict=True):
        try:
            cloaked = generator.cloaked_photo_for(photo, source)
        except ValueError:
            out.append(None)
            continue
        face = aligner.align(photo, generator.template, source)
        crop = warp_photo_to_crop(cloaked, face.matrix, size).astype(np.float32)
        out.append(CloakedPhoto(source, cloaked, face.crop, crop, image_metrics(face.crop, crop)["dssim"],
                                image_metrics(photo, cloaked)))
    return out, time.perf_counter() - start


def cloak_metrics(cloaked: Sequence[CloakedPhoto], seconds: float) -> dict[str, float]:
    """Perceptual cost and speed of a cloaking run, as every scenario that uploads cloaked photos reports them."""
    if not cloaked:
        return {"dssim": float("nan"), "photo_dssim": float("nan"), "psnr": float("nan"), "linf": float("nan"),
                "sec_per_image": float("nan")}
    return {
        "dssim": float(np.mean([c.crop_dssim for c in cloaked])),
        "photo_dssim": float(np.mean([c.photo_metrics["dssim"] for c in cloaked])),
        "psnr": float(np.mean([c.photo_metrics["psnr"] for c in cloaked])),
        "linf": float(np.max([c.photo_metrics["linf"] for c in cloaked])),
        "sec_per_image": seconds / len(cloaked),
    }
