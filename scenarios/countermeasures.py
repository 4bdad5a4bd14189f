"""Countermeasures: transforms a tracker applies to photos before it embeds them (uploads, queries or both).

Each one is registered in ``COUNTERMEASURES`` where it is defined, by family, with its strengths as modes
(``jpeg:50``, ``blur:1``); ``COUNTERMEASURES.create("jpeg", quality=100)`` builds any other strength. ``apply``
takes and returns uint8 (H, W, 3) RGB photos of any size, deterministically for a seed. ART's preprocessors do
the work where they fit (JpegCompression, SpatialSmoothing, FeatureSqueezing); ART is imported on first use.
Gaussian noise is drawn here rather than with ART's GaussianAugmentation, which samples from NumPy's global
generator and so cannot be seeded without touching global state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fawkes_eval.align import content_key
from fawkes_eval.registry import COUNTERMEASURES

# The strengths of DESIGN.md section 2, as registry modes: family -> {mode: constructor keywords}.
STRENGTHS: dict[str, dict[str, dict[str, Any]]] = {
    "jpeg": {str(q): {"quality": q} for q in (95, 75, 50, 30, 10)},
    "blur": {f"{s:g}": {"sigma": s} for s in (0.5, 1.0, 2.0)},
    "rescale": {f"{f:g}": {"factor": f} for f in (0.75, 0.5, 0.25)},
    "median": {str(w): {"window": w} for w in (3, 5)},
    "gaussian-noise": {f"{s:g}": {"sigma": s} for s in (2.0, 4.0, 8.0)},
    "bit-depth": {str(b): {"bits": b} for b in (5, 4, 3)},
}


def _check_photos(photos: list[np.ndarray], who: str) -> None:
    for i, p in enumerate(photos):
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"{who}: photo {i} must be uint8 (H, W, 3) RGB, got {p.dtype} {p.shape}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _per_photo_art(preprocessor: Callable[..., tuple[np.ndarray, Any]], photos: list[np.ndarray]) -> list[np.ndarray]:
    """Run an ART preprocessor (NHWC, float 0..255) on each photo alone: photos may differ in size."""
    return [_to_uint8(preprocessor(p[None].astype(np.float32))[0][0]) for p in photos]


@COUNTERMEASURES.register("jpeg", modes=STRENGTHS["jpeg"], summary="JPEG re-encoding at a quality (ART JpegCompression)")
class Jpeg:
    """JPEG re-encoding at ``quality`` (1..100), through ART's JpegCompression (PIL, 4:2:0 chroma)."""

    def __init__(self, quality: int) -> None:
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise ValueError(f"jpeg quality must be an integer in 1..100, got {quality!r}")
        self.quality = quality
        self.name = f"jpeg:{quality}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from art.defences.preprocessor import JpegCompression

        _check_photos(photos, self.name)
        return _per_photo_art(JpegCompression(clip_values=(0, 255), quality=self.quality, channels_first=False), photos)


@COUNTERMEASURES.register("blur", modes=STRENGTHS["blur"], summary="Gaussian blur, sigma in pixels")
class GaussianBlur:
    """Gaussian blur with standard deviation ``sigma`` pixels per colour channel (SciPy, reflected borders)."""

    def __init__(self, sigma: float) -> None:
        if not sigma > 0:
            raise ValueError(f"blur sigma must be > 0 pixels, got {sigma!r}")
        self.sigma = float(sigma)
        self.name = f"blur:{self.sigma:g}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from scipy.ndimage import gaussian_filter

        _check_photos(photos, self.name)
        return [_to_uint8(gaussian_filter(p.astype(np.float32), sigma=(self.sigma, self.sigma, 0))) for p in photos]


@COUNTERMEASURES.register("rescale", modes=STRENGTHS["rescale"], summary="down-then-up scaling by a factor (bicubic)")
class Rescale:
    """Down-then-up scaling: resize by ``factor`` (0 < factor < 1) and back to the original size (PIL bicubic)."""

    def __init__(self, factor: float) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"rescale factor must be in (0, 1), got {factor!r}")
        self.factor = float(factor)
        self.name = f"rescale:{self.factor:g}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from PIL import Image

        _check_photos(photos, self.name)
        out = []
        for p in photos:
            h, w = p.shape[:2]
            small = Image.fromarray(p).resize((max(1, round(w * self.factor)), max(1, round(h * self.factor))),
                                              Image.Resampling.BICUBIC)
            out.append(np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8))
        return out


@COUNTERMEASURES.register("median", modes=STRENGTHS["median"], summary="median filter over a window (ART SpatialSmoothing)")
class MedianFilter:
    """Median filter over a ``window`` x ``window`` neighbourhood per channel, through ART's SpatialSmoothing."""

    def __init__(self, window: int) -> None:
        if not (isinstance(window, int) and window >= 2):
            raise ValueError(f"median window must be an integer >= 2 pixels, got {window!r}")
        self.window = window
        self.name = f"median:{window}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from art.defences.preprocessor import SpatialSmoothing

        _check_photos(photos, self.name)
        smoothing = SpatialSmoothing(window_size=self.window, channels_first=False, clip_values=(0, 255))
        return _per_photo_art(smoothing, photos)


@COUNTERMEASURES.register("gaussian-noise", modes=STRENGTHS["gaussian-noise"],
                          summary="seeded additive Gaussian noise, sigma in 0..255 units")
class GaussianNoise:
    """Additive Gaussian noise with standard deviation ``sigma`` in 0..255 units, seeded, rounded and clipped.

    Each photo draws from a generator seeded with ``seed`` and the photo's pixel hash, so its noise depends on
    the seed and the photo alone, not on the batch it arrives in (photos are streamed in batches of any size).
    """

    def __init__(self, sigma: float) -> None:
        if not sigma > 0:
            raise ValueError(f"gaussian-noise sigma must be > 0 (0..255 units), got {sigma!r}")
        self.sigma = float(sigma)
        self.name = f"gaussian-noise:{self.sigma:g}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        _check_photos(photos, self.name)
        return [_to_uint8(p + np.random.default_rng([seed, int(content_key(p)[:15], 16)]).normal(0.0, self.sigma, p.shape))
                for p in photos]


@COUNTERMEASURES.register("bit-depth", modes=STRENGTHS["bit-depth"], summary="bit-depth reduction (ART FeatureSqueezing)")
class BitDepth:
    """Bit-depth reduction to ``bits`` per channel (1..7), through ART's FeatureSqueezing."""

    def __init__(self, bits: int) -> None:
        if not (isinstance(bits, int) and 1 <= bits <= 7):
            raise ValueError(f"bit-depth must be an integer in 1..7 bits, got {bits!r}")
        self.bits = bits
        self.name = f"bit-depth:{bits}"

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from art.defences.preprocessor import FeatureSqueezing

        _check_photos(photos, self.name)
        return _per_photo_art(FeatureSqueezing(clip_values=(0, 255), bit_depth=self.bits), photos)
