"""The seams between rooms: small Protocols and result dataclasses.

Rooms depend on these, never on each other: an attack receives surrogates as ``DifferentiableExtractor``
objects, a ``Scenario`` receives extractors, trackers and cloak generators as objects in a ``ScenarioCell``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from fawkes_eval.align import DetectedFace, FaceAligner
    from fawkes_eval.data import Split


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
    # the face detector of the model's own pipeline (a ``DETECTORS`` name, e.g. "scrfd" for InsightFace's models, as
    # ``FaceAnalysis`` detects), with which it re-detects every photo it embeds; None: the dataset's detector
    detector: str | None = None


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


# --- the scenario seam ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScenarioData:
    """A dataset as every cell of one (dataset, seed) sees it: photos (possibly read on access), their files and
    identities, the seeded split, the protected users, and the aligner every victim re-detects with."""

    name: str
    photos: Sequence[np.ndarray]
    sources: Sequence[str]
    identities: Sequence[str]
    split: Split
    protected: tuple[str, ...]
    seed: int
    aligner: FaceAligner


@dataclass(frozen=True)
class ScenarioCell:
    """One cell as a scenario receives it: components as objects, never names."""

    data: ScenarioData
    generator: CloakGenerator
    victim: FeatureExtractor
    make_tracker: Callable[[], Tracker]
    countermeasure: Countermeasure | None = None
    side: str = "uploads"  # which photos the countermeasure transforms: uploads, queries or both
    leak_ratio: float = 0.0  # share of a protected user's uploads left clean
    n_boot: int = 2000
    topk: int = 5
    # robust training (a tracker entry's ``robust`` option): the tracker also trains on every training photo
    # through each of these transforms; scenarios that declared ``augmentations=True`` at registration use them
    augmentations: tuple[Countermeasure, ...] = ()


@dataclass(frozen=True)
class PublicPhotos:
    """An adaptive victim's public identities' photos (possibly read on access), the protected users dropped."""

    photos: Sequence[np.ndarray]
    sources: list[str]
    identities: list[str]
    description: dict[str, Any]  # where they come from (dataset or root/subset, manifest sha256), for the row


@dataclass(frozen=True)
class AdaptedVictims:
    """What an adaptation (an ``EVALUATIONS`` entry declaring ``adapts_victims``, e.g. ``facecure``) returns for a
    cell: the victim adapted to the cell's cloak, its control (the same fine-tune on clean public photos only),
    and the record the row keeps (identities, pairs, epochs, seconds, cache hit, ...)."""

    adapted: FeatureExtractor
    control: FeatureExtractor
    record: dict[str, Any]


@dataclass(frozen=True)
class CloakExample:
    """One clean / cloaked face crop of a cloaking run, for report image grids."""

    source: str
    clean: np.ndarray  # uint8 (S, S, 3)
    cloaked: np.ndarray  # uint8 (S, S, 3)


@dataclass(frozen=True)
class PreparedCloaks:
    """What a scenario's shared step made: how many photos it cloaked, in how many seconds, an example, and the
    target each protected user was pushed towards (targeted cloaks only)."""

    n_photos: int
    seconds: float
    example: CloakExample | None = None
    targets: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)  # e.g. an external pairing report, for the provenance


@dataclass(frozen=True)
class ScenarioResult:
    """One cell's outcome. ``outcomes[user]``: per clean test query of that user, in split order, whether the
    threat model failed on it (True = protected); it lets later verdicts pair cells query by query."""

    metrics: Mapping[str, float]
    per_user: Mapping[str, float]
    outcomes: Mapping[str, Sequence[bool]]
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportColumn:
    """A metric a scenario reports: its key in ``metrics``, the column header, and the number format. A metric
    ``m`` with ``m_ci_low`` / ``m_ci_high`` beside it is shown with its interval."""

    metric: str
    header: str
    format: str = ".2f"


@dataclass(frozen=True)
class CellCost:
    """Upper-bound work of a cell's scenario beyond cloaking, to size a campaign before it runs."""

    photos_to_cloak: int
    photos_to_embed: int


@runtime_checkable
class Scenario(Protocol):
    """A threat model, registered in ``SCENARIOS``; the runner knows none by name (ARCHITECTURE.md, "a scenario").

    ``headline``: the metric whose per-user values and per-query ``outcomes`` a row keeps (the protection rate: 1
    means protected); it is what baselines and regression verdicts pair. ``columns``: what reports show, headline
    first. ``prepare`` is a cell group's shared, costly step (cloak what the threat model uploads; cached inside
    the scenario); ``evaluate`` computes one cell; ``cost`` estimates a cell's work from its dataset's size.
    """

    name: str
    headline: str
    columns: tuple[ReportColumn, ...]

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks: ...

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult: ...

    def cost(self, n_images: int, n_protected_train: int, n_protected_test: int) -> CellCost: ...
