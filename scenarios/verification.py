"""The verification protocol (dodging): is a cloaked enrolment still matched by clean probes of the same person?

Clean model first, on LFW ``pairs.txt`` (10 folds of 300 same-person and 300 different-person pairs): for each
held-out fold, the threshold at a false-accept rate (1e-2, 1e-3) is calibrated on the *other* folds' different
pairs, and the true-accept rate (TAR) is measured on the fold's same pairs; ROC AUC and equal error rate (EER)
come from all pairs' similarities (scikit-learn). Then dodging: same-person pairs whose first photo is enrolled
cloaked and whose second is a clean probe; the dodging rate is the share of those pairs whose similarity falls
below the threshold calibrated on all folds' clean different pairs, beside the clean false-reject rate of the
same pairs. Similarity is the cosine of the two embeddings. Pairs with a photo in which no face is found are
left out and counted.

``verify_clean`` and ``dodging_rate`` are the standalone evaluation (``EVALUATIONS``, benchmarks); ``Verification``
is the campaign scenario (``grid.scenarios: [verification]``): the same leave-one-fold-out calibration
(``calibrate_by_fold``) on a pairs file or on pairs drawn from the cell's dataset, and dodging on the protected
users' genuine pairs with a cloaked upload on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.align import FaceAligner, NoFaceError, PhotoFiles, load_photo
from fawkes_eval.data import DatasetError
from fawkes_eval.metrics import RateCI, hierarchical_bootstrap
from fawkes_eval.types import (
    CellCost,
    CloakGenerator,
    FeatureExtractor,
    PreparedCloaks,
    ReportColumn,
    ScenarioCell,
    ScenarioData,
    ScenarioResult,
)
from recognizers.trackers import threshold_at_far
from scenarios.galleries import GalleryBench, curve_figure, rate_metrics, unit
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
    tar, held_out_far, thresholds = calibrate_by_fold(sims, same, folds, config.fars, seed, config.n_boot)
    return VerificationOutcome(
        extractor.info.name, tar, held_out_far, thresholds, float(roc_auc_score(same, sims)),
        equal_error_rate(same, sims), len(kept), skipped, sims, tuple(kept),
    )


def calibrate_by_fold(
    sims: np.ndarray, same: np.ndarray, folds: np.ndarray, fars: Sequence[float], seed: int, n_boot: int,
) -> tuple[dict[float, RateCI], dict[float, float], dict[float, float]]:
    """Per FAR: TAR on each held-out fold's same pairs at the threshold calibrated on the other folds' different
    pairs (mean over folds, CI resampling folds and pairs), the false-accept rate those thresholds reach on the
    held-out folds, and the threshold calibrated on every fold's different pairs."""
    tar: dict[float, RateCI] = {}
    held_out_far: dict[float, float] = {}
    for far in fars:
        accepted, false_accepts = [], []
        for fold in sorted(set(folds.tolist())):
            threshold = threshold_at_far(sims[(folds != fold) & ~same], far)
            accepted.append((sims[(folds == fold) & same] >= threshold).astype(float))
            false_accepts.append(sims[(folds == fold) & ~same] >= threshold)
        tar[far] = hierarchical_bootstrap(accepted, seed=seed, n_boot=n_boot)
        held_out_far[far] = float(np.mean(np.concatenate(false_accepts)))
    return tar, held_out_far, {far: threshold_at_far(sims[~same], far) for far in fars}


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


# --- the campaign scenario ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IndexPair:
    """Two photos of a pair list, by position, and whether they show the same person."""

    first: int
    second: int
    same: bool
    fold: int


def draw_pairs(identities: Sequence[str], seed: int, n_folds: int, per_fold: int) -> list[IndexPair]:
    """Same-identity and impostor pairs of a dataset, ``per_fold`` of each kind per fold (fewer where the dataset
    has fewer). Identities are dealt to the folds after a seeded shuffle; a fold's same pairs are two photos of one
    of its identities, its impostor pairs a photo of one of its identities and a photo of any other identity, so a
    held-out fold's enrolled identities are never among the calibration folds' enrolled identities."""
    names = sorted(set(identities))
    n_folds = min(n_folds, len(names))
    rng = np.random.default_rng([seed, 13])
    fold_of = {name: f % n_folds for f, name in enumerate(rng.permutation(names).tolist())}
    by_name: dict[str, list[int]] = {n: [] for n in names}
    for i, name in enumerate(identities):
        by_name[name].append(i)
    number = {n: i for i, n in enumerate(names)}
    label = np.array([number[n] for n in identities])
    taken: set[tuple[int, int]] = set()  # an impostor pair drawn for one fold is not drawn again for another
    pairs: list[IndexPair] = []
    for fold in range(n_folds):
        mine = [n for n in names if fold_of[n] == fold]
        same = [(a, b) for n in mine for x, a in enumerate(by_name[n]) for b in by_name[n][x + 1:]]
        if len(same) > per_fold:
            same = [same[i] for i in sorted(rng.choice(len(same), per_fold, replace=False))]
        pairs.extend(IndexPair(a, b, True, fold) for a, b in same)
        firsts = np.array([i for n in mine for i in by_name[n]])
        space = len(firsts) * (len(identities) - 1)
        chosen: set[tuple[int, int]] = set()
        for _ in range(50 * per_fold):  # rejection sampling: the space of impostor pairs may be huge
            if len(chosen) >= per_fold or len(chosen) >= space:
                break
            a, b = int(rng.choice(firsts)), int(rng.integers(len(identities)))
            if label[a] != label[b] and (min(a, b), max(a, b)) not in taken:
                chosen.add((min(a, b), max(a, b)))
        taken |= chosen
        pairs.extend(IndexPair(a, b, False, fold) for a, b in sorted(chosen))
    return pairs


def _far_key(far: float) -> str:
    return f"{far:.0e}"  # 0.01 -> "1e-02": a metric-name-safe spelling


def _bootstrap_statistic(groups: Sequence[np.ndarray], statistic: Any, seed: int, n_boot: int) -> RateCI:
    """``statistic(indices)`` over all items, with a percentile CI resampling groups (folds), then their items."""
    everything = np.concatenate(groups)
    point = float(statistic(everything))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        chosen = rng.integers(0, len(groups), size=len(groups))
        sample = np.concatenate([groups[c][rng.integers(0, len(groups[c]), size=len(groups[c]))] for c in chosen])
        try:
            reps.append(float(statistic(sample)))
        except ValueError:  # a replicate with one class only has no ROC
            continue
    low, high = np.quantile(reps, [0.025, 0.975]) if reps else (point, point)
    return RateCI(point, float(min(low, point)), float(max(high, point)), len(groups), len(everything))


@dataclass(frozen=True)
class VerificationScenarioConfig:
    """Options of ``{name: verification, ...}``.

    ``pairs``: a pairs file in LFW's ``pairs.txt`` format for the clean model's TAR / AUC / EER and the thresholds;
    its photos are named ``identity/identity_NNNN.jpg`` relative to ``pairs_images`` (default: the cell's dataset,
    matched by identity folder and file name; pairs with a photo it lacks are left out and counted). Without
    ``pairs``, same-identity and impostor pairs are drawn from the cell's dataset with the seed (``draw_pairs``).
    ``folds``: folds drawn (a pairs file brings its own); ``pairs_per_fold``: at most this many same and this many
    different pairs per fold (LFW has 300). ``fars``: the false-accept rates, the first one the headline's."""

    pairs: str | None = None
    pairs_images: str | None = None
    fars: tuple[float, ...] = (1e-2, 1e-3)
    folds: int = 10
    pairs_per_fold: int = 300

    def __post_init__(self) -> None:
        object.__setattr__(self, "fars", tuple(float(f) for f in self.fars))
        if not self.fars or not all(0.0 < f < 1.0 for f in self.fars):
            raise ValueError(f"fars must be false-accept rates in (0, 1), got {list(self.fars)}")
        if self.folds < 2 or self.pairs_per_fold < 1:
            raise ValueError("verification needs folds >= 2 (thresholds come from the other folds) and pairs_per_fold >= 1")
        if self.pairs is not None and not Path(self.pairs).is_file():
            raise ValueError(f"pairs: {self.pairs} is not a file")
        if self.pairs_images is not None and (self.pairs is None or not Path(self.pairs_images).is_dir()):
            raise ValueError(f"pairs_images: {self.pairs_images} must be a folder, and given with pairs")


@dataclass(frozen=True)
class CleanPairs:
    """The clean model on the calibration pairs: similarities, kinds and folds, and what was left out."""

    sims: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    n_skipped: int
    source: str


class Verification:
    """Verification and dodging as a campaign scenario (``grid.scenarios: [verification]``).

    Clean model: TAR at each FAR with leave-one-fold-out thresholds, ROC AUC and EER, each with a CI resampling
    folds and pairs. Dodging, per protected user: every genuine pair of one of the user's posted uploads (cloaked;
    a leak ratio keeps some clean) and one of the user's clean test photos (the probe); dodged when their
    similarity falls below the threshold calibrated on every fold's clean impostor pairs. Only the protected users'
    genuine pairs are cloaked (what the campaign cloaks anyway, shared with the other scenarios through the cloak
    cache): with few protected users the CI is wide, and a campaign protects more users (``protected.count``) to
    narrow it. Headline: the dodging rate at the first FAR, one outcome per genuine pair (uploads in split order,
    then probes), so ``none`` gives the clean false-reject rate of the same pairs as the baseline. A countermeasure
    on ``uploads`` transforms the enrolled upload, on ``queries`` the probe; thresholds stay calibrated on clean
    photos. Similarity: cosine of the victim's embeddings; the tracker axis plays no part here.
    """

    name = "verification"
    headline = "dodging"

    def __init__(self, config: VerificationScenarioConfig | None = None) -> None:
        self.config = config or VerificationScenarioConfig()
        keys = [_far_key(f) for f in self.config.fars]
        self.columns = (
            ReportColumn("dodging", f"dodging@FAR {keys[0]} [95% CI]"),
            *(ReportColumn(f"dodging_{k}", f"dodging@{k}") for k in keys[1:]),
            ReportColumn(f"clean_reject_{keys[0]}", f"clean reject@{keys[0]}"),
            *(ReportColumn(f"tar_{k}", f"TAR@{k}") for k in keys),
            ReportColumn("auc", "AUC", ".3f"),
            ReportColumn("eer", "EER", ".3f"),
            ReportColumn("dssim", "DSSIM", ".4f"),
        )
        self.bench = GalleryBench()
        self._clean: dict[tuple[str, str], CleanPairs] = {}

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks:
        return self.bench.prepare(data, generator, leak_ratio)

    def clean_pairs(self, cell: ScenarioCell) -> CleanPairs:
        """Similarities of the calibration pairs (the pairs file's, or drawn), clean, once per dataset and victim."""
        key = (cell.data.name, cell.victim.info.name)
        if key not in self._clean:
            self._clean[key] = self._pairs_file(cell) if self.config.pairs else self._drawn(cell)
        return self._clean[key]

    def _drawn(self, cell: ScenarioCell) -> CleanPairs:
        data = cell.data
        vectors = self.bench.dataset(cell, "clean")
        pairs = draw_pairs(data.identities, data.seed, self.config.folds, self.config.pairs_per_fold)
        sims = np.sum(vectors[[p.first for p in pairs]] * vectors[[p.second for p in pairs]], axis=1)
        return CleanPairs(sims, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), 0,
                          f"drawn from {data.name} with seed {data.seed}")

    def _pairs_file(self, cell: ScenarioCell) -> CleanPairs:
        data = cell.data
        path = Path(str(self.config.pairs))
        listed = [p for p in read_pairs(path) if p.fold < self.config.folds]  # its first ``folds`` folds
        chosen = select_pairs(listed, VerificationConfig(folds=tuple(sorted({p.fold for p in listed})),
                                                         pairs_per_fold=self.config.pairs_per_fold))
        names = sorted({p.first for p in chosen} | {p.second for p in chosen})
        if self.config.pairs_images is not None:
            root = Path(self.config.pairs_images)
            present = [n for n in names if (root / n).is_file()]  # a listed photo the folder lacks: its pairs are left out
            sources = [str(root / n) for n in present]
            found_vectors, found = self.bench.embedder(cell).embed_found(PhotoFiles(sources), sources)
            vectors = dict(zip([present[i] for i in found], unit(found_vectors), strict=True))
        else:
            position = {f"{Path(s).parent.name}/{Path(s).name}": i for i, s in enumerate(data.sources)}
            clean = self.bench.dataset(cell, "clean")
            vectors = {n: clean[position[n]] for n in names if n in position}
        kept = [p for p in chosen if p.first in vectors and p.second in vectors]
        if not kept:
            raise DatasetError(f"{path}: none of its pairs has both photos in "
                               f"{self.config.pairs_images or 'the dataset ' + data.name}")
        sims = np.array([float(vectors[p.first] @ vectors[p.second]) for p in kept])
        return CleanPairs(sims, np.array([p.same for p in kept]), np.array([p.fold for p in kept]),
                          len(chosen) - len(kept), str(path))

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        from sklearn.metrics import roc_auc_score, roc_curve

        data = cell.data
        config = self.config
        clean = self.clean_pairs(cell)
        tar, held_out_far, thresholds = calibrate_by_fold(clean.sims, clean.same, clean.folds, config.fars,
                                                          data.seed, cell.n_boot)
        by_fold = [np.flatnonzero(clean.folds == f) for f in sorted(set(clean.folds.tolist()))]
        auc = _bootstrap_statistic(by_fold, lambda i: roc_auc_score(clean.same[i], clean.sims[i]), data.seed,
                                   cell.n_boot)
        eer = _bootstrap_statistic(by_fold, lambda i: equal_error_rate(clean.same[i], clean.sims[i]), data.seed,
                                   cell.n_boot)

        uploads = self.bench.posted_uploads(cell)
        posted_clean = self.bench.dataset(cell, "posted")
        probes = self.bench.dataset(cell, "probe")
        cloaked_sims, clean_sims = {}, {}
        for user in data.protected:
            enrolled = data.split.train[user]
            test = data.split.test[user]
            cloaked_sims[user] = (np.stack([uploads[i] for i in enrolled]) @ probes[test].T).ravel()
            clean_sims[user] = (posted_clean[enrolled] @ probes[test].T).ravel()

        metrics: dict[str, float] = {}
        per_user: dict[str, float] = {}
        outcomes: dict[str, list[bool]] = {}
        marks: dict[str, list[float]] = {}
        for n, far in enumerate(config.fars):
            k, t = _far_key(far), thresholds[far]
            dodged = {u: s < t for u, s in cloaked_sims.items()}
            names = ["dodging", f"dodging_{k}"] if n == 0 else [f"dodging_{k}"]
            for name in names:
                metrics.update(rate_metrics(name, dodged, data.seed, cell.n_boot))
            metrics.update(rate_metrics(f"clean_reject_{k}", {u: s < t for u, s in clean_sims.items()}, data.seed,
                                        cell.n_boot))
            metrics.update({f"tar_{k}": tar[far].value, f"tar_{k}_ci_low": tar[far].low,
                            f"tar_{k}_ci_high": tar[far].high, f"held_out_far_{k}": held_out_far[far],
                            f"threshold_{k}": t})
            if n == 0:
                per_user = {u: float(d.mean()) for u, d in dodged.items()}
                outcomes = {u: [bool(x) for x in d] for u, d in dodged.items()}
            marks[f"clean, FAR {k}"] = [held_out_far[far], tar[far].value]
            marks[f"cloaked uploads, FAR {k}"] = [far, 1.0 - metrics[f"dodging_{k}"]]
        metrics.update({"auc": auc.value, "auc_ci_low": auc.low, "auc_ci_high": auc.high,
                        "eer": eer.value, "eer_ci_low": eer.low, "eer_ci_high": eer.high})
        metrics.update(self.bench.cloak_metrics(cell))

        fpr, tpr, _ = roc_curve(clean.same, clean.sims)
        floor = 1.0 / max(int((~clean.same).sum()), 1)
        grid = np.geomspace(floor, 1.0, 100)
        curve = [float(tpr[fpr <= x].max()) if np.any(fpr <= x) else 0.0 for x in grid]
        figure = curve_figure("verification-roc", "Verification: ROC of the clean model", "false-accept rate",
                              "true-accept rate", {"clean pairs": curve}, grid.tolist(), x_log=True, marks=marks)
        provenance: dict[str, Any] = {
            "pairs": clean.source, "n_pairs": len(clean.sims), "n_same_pairs": int(clean.same.sum()),
            "n_folds": len(by_fold), "n_skipped_pairs": clean.n_skipped,
            "n_genuine_pairs_cloaked": sum(len(s) for s in cloaked_sims.values()),
            "thresholds": {_far_key(f): t for f, t in thresholds.items()}, "figures": [figure],
        }
        return ScenarioResult(metrics, per_user, outcomes, provenance)

    def cost(self, n_images: int, n_protected_train: int, n_protected_test: int) -> CellCost:
        # a pairs file's own photos: at most two per pair
        pairs_photos = 2 * 2 * self.config.pairs_per_fold * self.config.folds if self.config.pairs_images else 0
        return CellCost(photos_to_cloak=n_protected_train, photos_to_embed=n_images + n_protected_train + pairs_photos)
