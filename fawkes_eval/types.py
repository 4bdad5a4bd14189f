"""The seams between rooms: small Protocols and result dataclasses.

Rooms depend on these, never on each other: an attack receives surrogates as ``DifferentiableExtractor``
objects, a scenario receives extractors, trackers and cloak generators through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from fawkes_eval.align import DetectedFace


@dataclass(frozen=True)
class ExtractorInfo:
    """What a feature extractor is, as recorded with every result it produces."""

    name: str
    family: str  # independent model families; variants of one network share a family
    input_size: int  # square input side in pixels
    template: str  # alignment template name, see fawkes_eval.align.TEMPLATES
    preprocessing: str  # human-readable, e.g. "RGB 0..255, minus mean (122.8, 117.0, 104.3), / 255"
    embedding_dim: int
    differentiable: bool
    license: str
    backend: str  # "dlib", "torch", "tensorflow", ...
    weight_sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256, checked at load
    source: str = ""  # where the weights come from


@runtime_checkable
class FeatureExtractor(Protocol):
    """Embeds aligned faces. ``faces``: uint8 (N, S, S, 3) RGB at ``info.template``; returns float32 (N, D)."""

    info: ExtractorInfo

    def embed(self, faces: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class DifferentiableExtractor(FeatureExtractor, Protocol):
    """An extractor usable as a cloak surrogate.

    ``torch_module()`` returns a module mapping float (N, 3, S, S) RGB in 0..255 (preprocessing included)
    to (N, D) embeddings, so that gradients reach the pixels.
    """

    def torch_module(self) -> torch.nn.Module: ...


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in a photo: uint8 (H, W, 3) RGB -> every face found, as ``fawkes_eval.align.DetectedFace`` (box,
    score, and the 5 ArcFace keypoints when the detector gives them). ``name`` enters alignment cache keys and
    provenance, so it names the detector's settings too when they change its output."""

    name: str

    def detect(self, photo: np.ndarray) -> list[DetectedFace]: ...


@runtime_checkable
class Tracker(Protocol):
    """What a third party builds on top of embeddings: trained on labelled embeddings, asked for identities."""

    name: str

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None: ...

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        """Top-k predicted labels per query, best first: int (N, k)."""
        ...


@dataclass
class CloakOutput:
    """Cloaked faces plus per-image measurements, aligned with the input batch."""

    faces: np.ndarray  # float32 (N, S, S, 3) RGB in 0..255 at the generator's template
    dssim: np.ndarray  # (N,) DSSIM between clean and cloaked crop, measured by the generator
    seconds: float  # wall time of the whole batch


@runtime_checkable
class CloakGenerator(Protocol):
    """Turns aligned faces into cloaked faces. ``name`` includes the version and mode: ``fawkes-v1.0:mid``."""

    name: str
    template: str  # alignment template of its input

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        """``faces``: uint8 (N, S, S, 3) RGB aligned at ``template``."""
        ...

    def params(self) -> dict[str, object]:
        """The resolved configuration, as logged with results."""
        ...


@runtime_checkable
class Countermeasure(Protocol):
    """A transform a tracker applies to photos (uploads, queries or both), e.g. JPEG at quality 50.

    ``name`` includes the strength: ``jpeg:50``. ``apply`` takes and returns uint8 (H, W, 3) RGB photos;
    each output must depend only on its photo and the seed (not on the other photos of the call), since
    datasets are streamed through it in batches of any size.
    """

    name: str

    def apply(self, photos: list[np.ndarray], seed: int) -> list[np.ndarray]: ...
