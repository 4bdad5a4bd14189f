"""The verification protocol (dodging): is a cloaked enrolment still matched by clean probes of the same person?

Clean model first, on LFW ``pairs.txt`` (10 folds of 300 same-person and 300 different-person pairs): for each
held-out fold, the threshold at a false-accept rate (1e-2, 1e-3) is calibrated on the *other* folds' different
pairs, and the true-accept rate (TAR) is measured on the fold's same pairs; ROC AUC and equal error rate (EER)
come from all pairs' similarities (scikit-learn). Then dodging: same-person pairs whose first photo is enrolled
cloaked and whose second is a clean probe; the dodging rate is the share of those pairs whose similarity falls
below the threshold calibrated on all folds' clean different pairs, beside the clean false-reject rate of the
same pairs. Similarity is the cosine of the two embeddings. Pairs with a photo in which no face is found are
left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fawkes_eval.align import FaceAligner, NoFaceError, load_photo
from fawkes_eval.data import DatasetError
from fawkes_eval.metrics import RateCI, hierarchical_bootstrap
from fawkes_eval.types import CloakGenerator, FeatureExtractor
from recognizers.trackers import threshold_at_far
from scenarios.photos import EmbeddingCache, cloak_photos


@dataclass(frozen=True)
class Pair:
    """Two LFW images (paths relative to the images folder) and whether they show the same person."""

    first: str
    second: str
    same: bool
    fold: int


def _image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """LFW ``pairs.txt``: a header ``FOLDS N``, then per fold N lines ``name i j`` and N lines ``name1 i name2 j``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read pairs file ({e.strerror})") from None
    try:
        n_folds, per_fold = (int(x) for x in lines[0].split())
    except (IndexError, ValueError):
        raise DatasetError(f"{path}:1: expected a header 'FOLDS PAIRS_PER_KIND', got {lines[:1]}") from None
    if len(lines) < 1 + 2 * n_folds * per_fold:
        raise DatasetError(f"{path}: header promises {2 * n_folds * per_fold} pairs, file has {len(lines) - 1} lines")
    pairs = []
    for number, line in enumerate(lines[1: 1 + 2 * n_folds * per_fold], start=2):
        fold, position = divmod(number - 2, 2 * per_fold)
        parts = line.split()
        same = position < per_fold
        if same and len(parts) == 3:
            pairs.append(Pair(_image(parts[0], parts[1]), _image(parts[0], parts[2]), True, fold))
        elif not same and len(parts) == 4:
            pairs.append(Pair(_image(parts[0], parts[1]), _image(parts[2], parts[3]), False, fold))
        else:
            kind = "'name i j' (same person)" if same else "'name1 i name2 j' (different people)"
            raise DatasetError(f"{path}:{number}: expected {kind}, got {line!r}")
    return pairs


@dataclass(frozen=True)
class VerificationConfig:
    fars: tuple[float, ...] = (1e-2, 1e-3)
    folds: tuple[int, ...] = tuple(range(10))  # the folds used (all ten in the standard protocol)
    pairs_per_fold: int | None = None  # the first n same and first n different pairs of each fold (None: all)
    n_boot: int = 2000

    def __post_init__(self) -> None:
        if len(self.folds) < 2:
            raise ValueError("verification needs at least 2 folds: thresholds come from the other folds")
        if not all(0.0 < f < 1.0 for f in self.fars):
            raise ValueError(f"false-accept rates must be in (0, 1), got {self.fars}")


@dataclass(frozen=True)
class VerificationOutcome:
    extractor: str
    tar: dict[float, RateCI]  # per FAR: mean over held-out folds, CI resampling folds and pairs
    held_out_far: dict[float, float]  # the false-accept rate those thresholds reach on the held-out folds
    thresholds: dict[float, float]  # calibrated on every used fold's different pairs (for dodging)
    auc: float
    eer: float
    n_pairs: int
    n_skipped_pairs: int  # a photo without a detectable face
    similarities: np.ndarray = field(repr=False, compare=False)  # per used pair, aligned with ``pairs``
    pairs: tuple[Pair, ...] = field(repr=False, compare=False)


@dataclass(frozen=True)
class DodgingOutcome:
    cloak: str
    extractor: str
    dodging: dict[float, RateCI]  # per FAR: cloaked enrolment vs clean probe below the threshold
    clean_reject: dict[float, RateCI]  # per FAR: the same pairs, both photos clean
    n_pairs: int
    n_identities: int


def select_pairs(pairs: Sequence[Pair], config: VerificationConfig) -> list[Pair]:
    out = []
    for fold in config.folds:
        for same in (True, False):
            chosen = [p for p in pairs if p.fold == fold and p.same == same]
            out.extend(chosen if config.pairs_per_fold is None else chosen[: config.pairs_per_fold])
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def _embed_pairs(
    cache: EmbeddingCache, aligner: FaceAligner, images: Path, pairs: Sequence[Pair]
) -> tuple[list[Pair], np.ndarray, np.ndarray, int]:
    """Embeddings of both photos of every pair whose faces are found; the others are counted as skipped."""
    usable: dict[str, np.ndarray] = {}
    missing: set[str] = set()
    template = cache.extractor.info.template
    for rel in sorted({p.first for p in pairs} | {p.second for p in pairs}):
        try:
            photo = load_photo(images / rel)
            aligner.align(photo, template, str(images / rel))
            usable[rel] = photo
        except NoFaceError:
            missing.add(rel)
        except OSError as e:
            raise DatasetError(f"{images / rel}: cannot read image listed in pairs ({e})") from None
    kept = [p for p in pairs if p.first in usable and p.second in usable]
    names = sorted(usable)
    vectors = dict(zip(names, cache.embed([usable[n] for n in names], [str(images / n) for n in names]), strict=True))
    first = np.stack([vectors[p.first] for p in kept])
    second = np.stack([vectors[p.second] for p in kept])
    return kept, first, second, len(pairs) - len(kept)


def equal_error_rate(same: np.ndarray, scores: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated on the ROC curve (scikit-learn)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(same, scores)
    fnr = 1.0 - tpr
    i = int(np.argmax(fnr <= fpr))  # first point where the curves have crossed
    if i == 0:
        return float(fpr[0])
    # linear interpolation between points i-1 and i of (fpr - fnr), which changes sign there
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def verify_clean(
    extractor: FeatureExtractor, aligner: FaceAligner, images: Path, pairs: Sequence[Pair],
    config: VerificationConfig | None = None, seed: int = 0,
) -> VerificationOutcome:
    """TAR@FAR by leave-one-fold-out calibration, ROC AUC and EER of ``extractor`` on clean pairs."""
    from sklearn.metrics import roc_auc_score

    config = config or VerificationConfig()
    chosen = select_pairs(pairs, config)
    kept, first, second, skipped = _embed_pairs(EmbeddingCache(extractor, aligner), aligner, images, chosen)
    sims = _cosine(first, second)
    same = np.array([p.same for p in kept])
    folds = np.array([p.fold for p in kept])
    tar: dict[float, RateCI] = {}
    held_out_far: dict[float, float] = {}
    for far in config.fars:
        accepted, false_accepts = [], []
        for fold in config.folds:
            threshold = threshold_at_far(sims[(folds != fold) & ~same], far)
            accepted.append((sims[(folds == fold) & same] >= threshold).astype(float))
            false_accepts.append(sims[(folds == fold) & ~same] >= threshold)
        tar[far] = hierarchical_bootstrap(accepted, seed=seed, n_boot=config.n_boot)
        held_out_far[far] = float(np.mean(np.concatenate(false_accepts)))
    thresholds = {far: threshold_at_far(sims[~same], far) for far in config.fars}
    return VerificationOutcome(
        extractor.info.name, tar, held_out_far, thresholds, float(roc_auc_score(same, sims)),
        equal_error_rate(same, sims), len(kept), skipped, sims, tuple(kept),
    )


def dodging_rate(
    extractor: FeatureExtractor, generator: CloakGenerator, aligner: FaceAligner, images: Path,
    pairs: Sequence[Pair], thresholds: dict[float, float], seed: int, n_boot: int = 2000,
) -> DodgingOutcome:
    """Cloak the first photo of each same-person pair (the enrolment) and probe it with the clean second photo.

    ``thresholds``: FAR -> similarity threshold, from ``verify_clean`` on clean pairs. Rates are bootstrapped
    over identities and their pairs.
    """
    same_pairs = [p for p in pairs if p.same]
    if not same_pairs:
        raise ValueError("dodging needs same-person pairs")
    cache = EmbeddingCache(extractor, aligner)
    kept, clean_first, second, _ = _embed_pairs(cache, aligner, images, same_pairs)
    photos = [load_photo(images / p.first) for p in kept]
    sources = [str(images / p.first) for p in kept]
    cloaked, _ = cloak_photos(generator, aligner, photos, sources, seed)
    cloaked_first = cache.embed([c.photo for c in cloaked], sources, photos)
    cloaked_sims, clean_sims = _cosine(cloaked_first, second), _cosine(clean_first, second)
    people = [p.first.split("/")[0] for p in kept]
    groups = {name: np.array([i for i, n in enumerate(people) if n == name]) for name in sorted(set(people))}

    def below(sims: np.ndarray, threshold: float) -> RateCI:
        return hierarchical_bootstrap([(sims[idx] < threshold).astype(float) for idx in groups.values()],
                                      seed=seed, n_boot=n_boot)

    return DodgingOutcome(
        generator.name, extractor.info.name,
        {far: below(cloaked_sims, t) for far, t in thresholds.items()},
        {far: below(clean_sims, t) for far, t in thresholds.items()},
        len(kept), len(groups),
    )
