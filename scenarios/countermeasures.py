"""Countermeasures: transforms a tracker applies to photos before it embeds them (uploads, queries or both).

Each one is registered in ``COUNTERMEASURES`` where it is defined, by family, with its strengths as modes
(``jpeg:50``, ``blur:1``); ``COUNTERMEASURES.create("jpeg", quality=100)`` builds any other strength. ``apply``
takes and returns uint8 (H, W, 3) RGB photos of any size, deterministically for a seed. ART's preprocessors do
the work where they fit (JpegCompression, SpatialSmoothing, FeatureSqueezing); ART is imported on first use.
Gaussian noise is drawn here rather than with ART's GaussianAugmentation, which samples from NumPy's global
generator and so cannot be seeded without touching global state.

Two more kinds compose these (DESIGN.md section 2, "Upload chains"):

- ``Chain``: an ordered list of countermeasures, written in a campaign as a YAML list (``[rescale:0.5, jpeg:75]``)
  and labelled ``rescale:0.5>jpeg:75``; each step gets the chain's seed.
- ``PlatformUpload`` presets named ``<platform>-like`` (``instagram-like``, ``facebook-like``, ``twitter-like``,
  ``whatsapp-like``): what a platform does to an upload, as far as public measurements tell (long edge resized,
  metadata stripped, 4:2:0 chroma, JPEG or WebP at a quality). They are approximations with stated parameters,
  never a platform's exact pipeline; README's "Upload presets" table says where each figure comes from.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fawkes_eval.align import content_key
from fawkes_eval.components import CHAIN, ComponentSpec, create_component
from fawkes_eval.registry import COUNTERMEASURES
from fawkes_eval.types import Countermeasure

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


# --- chains ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainConfig:
    """The steps of a chain, in the order they are applied (grid entries of registered countermeasures)."""

    steps: tuple[ComponentSpec, ...]

    def __post_init__(self) -> None:
        if not self.steps or not all(isinstance(s, ComponentSpec) for s in self.steps):
            raise ValueError(f"a chain needs one or more countermeasure entries as steps, got {self.steps!r}")
        for step in self.steps:
            if step.name in (CHAIN, "none"):
                raise ValueError(f"a chain's step cannot be {step.name!r}: list the countermeasures themselves")


@COUNTERMEASURES.register(CHAIN, config=f"{__name__}:ChainConfig",
                          summary="an ordered list of countermeasures, applied in order (a YAML list in a campaign)")
class Chain:
    """Countermeasures applied one after the other, in the listed order, each with the chain's seed.

    A photo's output depends only on the photo and the seed (each step's does), as ``Countermeasure`` requires.
    ``name`` joins the steps' labels with ``>``: ``rescale:0.5>jpeg:75``.
    """

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.steps: list[Countermeasure] = [create_component(COUNTERMEASURES, step) for step in config.steps]
        self.name = ">".join(step.label for step in config.steps)

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        _check_photos(photos, self.name)
        for step in self.steps:
            photos = step.apply(photos, seed)
        return photos


def chain(*steps: str | ComponentSpec) -> Chain:
    """A chain from registered names or grid entries, in order: ``chain("rescale:0.5", "jpeg:75")``."""
    return Chain(ChainConfig(tuple(s if isinstance(s, ComponentSpec) else ComponentSpec(s) for s in steps)))


# --- what a platform does to an upload ----------------------------------------------------------------------------

UPLOAD_FORMATS = ("jpeg", "webp")


@dataclass(frozen=True)
class UploadConfig:
    """One platform's re-encoding of an upload.

    ``long_edge``: the longest side in pixels after the platform's downscale (photos already smaller are not
    enlarged); ``format``: ``jpeg`` (baseline, 4:2:0 chroma subsampling) or ``webp`` (lossy WebP, which is 4:2:0
    by construction); ``quality``: the encoder's quality, 1..100 (libjpeg's scale for JPEG, libwebp's for WebP).
    Metadata (EXIF, ICC profile, comments) is never written: the encoded file carries the pixels only, after the
    EXIF orientation was applied when the photo was read (``fawkes_eval.align.load_photo``).
    """

    long_edge: int = 2048
    format: str = "jpeg"
    quality: int = 85

    def __post_init__(self) -> None:
        if not (isinstance(self.long_edge, int) and self.long_edge >= 16):
            raise ValueError(f"long_edge must be an integer >= 16 pixels, got {self.long_edge!r}")
        if self.format not in UPLOAD_FORMATS:
            raise ValueError(f"format must be one of {', '.join(UPLOAD_FORMATS)}, got {self.format!r}")
        if not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ValueError(f"quality must be an integer in 1..100, got {self.quality!r}")


class PlatformUpload:
    """A photo as a platform serves it back after upload (``platform`` names it, ``config_class`` holds its figures,
    ``config`` any other setting): downscaled to ``long_edge`` (Lanczos), then encoded
    once as ``format`` at ``quality`` with 4:2:0 chroma and no metadata, then decoded.

    The output is smaller than the input when the input's long edge exceeds ``long_edge`` (the platform serves
    the smaller photo; the victims re-detect and align faces on whatever they are given). ``encode`` returns the
    file the platform would store, for inspection.
    """

    def __init__(self, platform: str, config_class: type[UploadConfig], config: UploadConfig | None = None) -> None:
        self.platform, self.config_class = platform, config_class
        self.config = config if config is not None else config_class()
        changed = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
                   if getattr(self.config, f.name) != getattr(config_class(), f.name)}
        self.name = f"{self.platform}-like" + ("{" + ",".join(f"{k}={v}" for k, v in changed.items()) + "}"
                                              if changed else "")

    def resized(self, photo: np.ndarray) -> Any:
        from PIL import Image

        image = Image.fromarray(photo)
        scale = self.config.long_edge / max(image.size)
        if scale >= 1.0:
            return image
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.LANCZOS)

    def encode(self, photo: np.ndarray) -> bytes:
        buf = io.BytesIO()
        image = self.resized(photo)
        if self.config.format == "jpeg":
            image.save(buf, format="JPEG", quality=self.config.quality, subsampling="4:2:0", optimize=False)
        else:
            image.save(buf, format="WEBP", quality=self.config.quality, method=4)
        return buf.getvalue()

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]:
        from PIL import Image

        _check_photos(photos, self.name)
        out = []
        for p in photos:
            with Image.open(io.BytesIO(self.encode(p))) as decoded:
                out.append(np.asarray(decoded.convert("RGB"), dtype=np.uint8))
        return out


# Where the figures come from (README's "Upload presets" names the sources; "approx." marks a figure no platform
# publishes, chosen inside the range that public re-encoding measurements report):
# - long edges: measured by uploading large photos and reading back the served file (Instagram 1080, Facebook
#   2048 for its high-quality path, Twitter/X 4096); WhatsApp's 1600 is the widely reported long edge of its
#   default (standard-quality) photo mode.
# - Twitter/X's JPEG quality 85 is the platform's own statement (its developer forum, 2018-2020: JPEG uploads
#   above quality 85 are transcoded to 85). Instagram, Facebook and WhatsApp choose a quality per photo and
#   publish none, so their figures are approximate.

@dataclass(frozen=True)
class InstagramLikeConfig(UploadConfig):
    """Instagram-like: long edge 1080 px (measured), JPEG quality 75 (approx.)."""

    long_edge: int = 1080
    quality: int = 75


@dataclass(frozen=True)
class FacebookLikeConfig(UploadConfig):
    """Facebook-like: long edge 2048 px (measured, high-quality path), JPEG quality 80 (approx.)."""

    long_edge: int = 2048
    quality: int = 80


@dataclass(frozen=True)
class TwitterLikeConfig(UploadConfig):
    """Twitter/X-like: long edge 4096 px (measured), JPEG quality 85 (the platform's stated figure)."""

    long_edge: int = 4096
    quality: int = 85


@dataclass(frozen=True)
class WhatsappLikeConfig(UploadConfig):
    """WhatsApp-like (standard-quality photo): long edge 1600 px (reported), JPEG quality 70 (approx.)."""

    long_edge: int = 1600
    quality: int = 70


# name -> (config with the platform's figures, summary); each registered as "<name>-like"
PLATFORMS: dict[str, tuple[type[UploadConfig], str]] = {
    "instagram": (InstagramLikeConfig, "Instagram-like upload: long edge 1080, JPEG ~75 (approx.), 4:2:0, no metadata"),
    "facebook": (FacebookLikeConfig, "Facebook-like upload: long edge 2048, JPEG ~80 (approx.), 4:2:0, no metadata"),
    "twitter": (TwitterLikeConfig, "Twitter/X-like upload: long edge 4096, JPEG 85 (stated), 4:2:0, no metadata"),
    "whatsapp": (WhatsappLikeConfig, "WhatsApp-like photo: long edge 1600, JPEG ~70 (approx.), 4:2:0, no metadata"),
}
for _platform, (_config, _summary) in PLATFORMS.items():
    COUNTERMEASURES.register(f"{_platform}-like", config=f"{__name__}:{_config.__name__}", summary=_summary)(
        functools.partial(PlatformUpload, _platform, _config))
