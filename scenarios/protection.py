"""The protection protocol (Fawkes paper; FaceCure's evaluation uses the same definition).

Per protected user, one at a time: their training photos are replaced by cloaked versions (a leak ratio keeps
some clean), the tracker is trained on every training photo, and queried with the user's clean test photos.
Protection success rate (PSR) = 1 - top-1 accuracy on those queries; the tracker's accuracy on the other
identities' test photos shows it still works.

``Protection`` is the registered ``Scenario`` (what campaigns run); ``ProtectionBench`` is the protocol over one
dataset with its costly parts cached, for code that drives the protocol directly (benchmarks, tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from fawkes_eval.align import TEMPLATES, FaceAligner, LazyPhotos
from fawkes_eval.components import declared_by
from fawkes_eval.data import Split
from fawkes_eval.metrics import RateCI, hierarchical_bootstrap, topk_hits
from fawkes_eval.types import (
    CellCost,
    CloakExample,
    CloakGenerator,
    Countermeasure,
    DifferentiableExtractor,
    ExtractorInfo,
    FeatureExtractor,
    PreparedCloaks,
    ReportColumn,
    ScenarioCell,
    ScenarioData,
    ScenarioResult,
    Tracker,
)
from recognizers.trackers import CalibratedTracker, FaceTracker
from scenarios.photos import CloakedPhoto, EmbeddingCache, cloak_metrics, cloak_photos, substitute_photos

# Which photos a countermeasure transforms: the tracker's training uploads, its queries, or both.
COUNTERMEASURE_SIDES = ("uploads", "queries", "both")


@dataclass(frozen=True)
class ProtectionConfig:
    leak_ratio: float = 0.0  # fraction of a protected user's training photos left clean
    topk: int = 5
    n_boot: int = 2000

    def __post_init__(self) -> None:
        if not 0.0 <= self.leak_ratio < 1.0:
            raise ValueError(f"leak_ratio must be in [0, 1), got {self.leak_ratio}")
        if self.topk < 1 or self.n_boot < 100:
            raise ValueError("topk must be >= 1 and n_boot >= 100")


@dataclass(frozen=True)
class ProtectionOutcome:
    psr: RateCI  # mean over protected users, bootstrap CI over users and images
    per_user: dict[str, float]
    topk_psr: float  # share of protected queries whose identity is not even in the top k
    others_acc: float  # top-1 accuracy on the other identities' test photos, averaged over runs
    n_identities: int
    n_train: int
    n_queries: int
    # per user, per clean test query (in split order): whether the tracker missed it; for paired comparisons
    misses: dict[str, tuple[bool, ...]] = field(default_factory=dict)


def evaluate_protection(
    make_tracker: Callable[[], Tracker],
    clean: np.ndarray,
    identities: list[str],
    split: Split,
    cloaked: dict[int, np.ndarray],
    protected: list[str],
    config: ProtectionConfig,
    seed: int,
    *,
    queries: np.ndarray | None = None,
    views: Sequence[tuple[np.ndarray, dict[int, np.ndarray]]] = (),
) -> ProtectionOutcome:
    """Run the protocol. ``clean``: (N, D) embeddings of every record (or any per-record array a tracker takes,
    such as aligned faces); ``cloaked``: record index -> embedding of its cloaked version, for every training
    record of every protected user (a record missing from it is uploaded clean). ``queries``: what the tracker is
    queried with per record (default ``clean``; differs when a countermeasure transforms queries). ``views``:
    further (clean, cloaked) training copies, e.g. the same photos through augmentations (robust training); the
    tracker trains on all of them.

    A ``CalibratedTracker`` (enroll-and-search) sets its threshold on the clean training embeddings, before any
    protected user's photos are replaced by cloaked ones."""
    queries = clean if queries is None else queries
    names = sorted(split.train)
    label_of = {name: i for i, name in enumerate(names)}
    labels = np.array([label_of[identity] for identity in identities])
    train_idx = np.array(sorted(i for idx in split.train.values() for i in idx))
    others_test = np.array(sorted(i for name, idx in split.test.items() if name not in protected for i in idx))

    failures: list[np.ndarray] = []
    per_user: dict[str, float] = {}
    topk_misses: list[np.ndarray] = []
    others_acc: list[float] = []
    for u, user in enumerate(protected):
        user_train = split.train[user]
        rng = np.random.default_rng([seed, u])
        leaked = set(rng.choice(user_train, size=int(round(config.leak_ratio * len(user_train))), replace=False))
        position = {int(i): p for p, i in enumerate(train_idx)}
        x_views = []
        for view_clean, view_cloaked in ((clean, cloaked), *views):
            x_view = view_clean[train_idx].copy()
            for i in user_train:
                if i not in leaked and i in view_cloaked:  # a photo another tool left without a copy stays clean
                    x_view[position[i]] = view_cloaked[i]
            x_views.append(x_view)
        tracker = make_tracker()
        if isinstance(tracker, CalibratedTracker):
            tracker.calibrate(clean[train_idx], labels[train_idx])
        tracker.fit(np.concatenate(x_views), np.tile(labels[train_idx], len(x_views)))

        user_test = np.array(split.test[user])
        ranked = tracker.rank(queries[user_test], config.topk)
        miss = ~topk_hits(ranked, labels[user_test], 1)
        failures.append(miss.astype(float))
        per_user[user] = float(miss.mean())
        topk_misses.append(~topk_hits(ranked, labels[user_test], config.topk))
        if len(others_test):
            others_acc.append(float(topk_hits(tracker.rank(queries[others_test], 1), labels[others_test], 1).mean()))

    return ProtectionOutcome(
        psr=hierarchical_bootstrap(failures, seed=seed, n_boot=config.n_boot),
        per_user=per_user,
        topk_psr=float(np.mean(np.concatenate(topk_misses))),
        others_acc=float(np.mean(others_acc)) if others_acc else float("nan"),
        n_identities=len(names),
        n_train=len(train_idx),
        n_queries=sum(len(split.test[u]) for u in protected),
        misses={user: tuple(bool(x) for x in f) for user, f in zip(protected, failures, strict=True)},
    )



class ProtectionBench:
    """The protocol over one dataset, with what is costly computed once and reused across cells.

    Cloaked photos are kept per (cloak, seed) and embeddings per victim (by pixel content), so a grid of
    cloaks x victims x trackers cloaks each photo once per cloak and embeds each photo once per victim.
    ``photos`` may be lazy (``fawkes_eval.align.PhotoFiles``): the dataset is read photo by photo whenever it is
    embedded, and only the protected users' cloaked photos stay in memory.
    """

    name = "protection"

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        sources: list[str],
        identities: list[str],
        aligner: FaceAligner,
        config: ProtectionConfig | None = None,
    ) -> None:
        self.photos = photos
        self.sources = sources
        self.identities = identities
        self.aligner = aligner
        self.config = config or ProtectionConfig()
        self._cloaked: dict[tuple[str, str, int, tuple[str, ...]], tuple[dict[int, CloakedPhoto], float]] = {}
        self.missing_copies: dict[tuple[str, str, int, tuple[str, ...]], list[str]] = {}  # whole-photo cloaks
        self._embedders: dict[str, EmbeddingCache] = {}
        # the untransformed dataset's embeddings per extractor: every cell with that victim reuses them, so the
        # photos (read from disk on access) are decoded and hashed once per victim, not once per cell
        self._as_is: dict[str, np.ndarray] = {}

    def cloak_users(
        self, generator: CloakGenerator, split: Split, protected: list[str], seed: int
    ) -> tuple[dict[int, CloakedPhoto], float]:
        """Cloak every training photo of the protected users; returns them by record index, and seconds.

        A generator that declared ``per_user`` is told each photo's user (one target per user); one that declared
        ``whole_photos`` (another tool's files) replaces each photo by its copy, and a photo without a copy stays
        clean (listed in ``missing_copies``)."""
        key = self.run_key(generator, seed, protected)
        if key not in self._cloaked:
            indices = [i for user in protected for i in split.train[user]]
            photos, sources = [self.photos[i] for i in indices], [self.sources[i] for i in indices]
            declared = declared_by(generator)
            if declared.get("whole_photos"):
                found, seconds = substitute_photos(generator, self.aligner, photos, sources)
                self.missing_copies[key] = [s for s, c in zip(sources, found, strict=True) if c is None]
                cloaked = {i: c for i, c in zip(indices, found, strict=True) if c is not None}
            else:
                users = [self.identities[i] for i in indices] if declared.get("per_user") else None
                made, seconds = cloak_photos(generator, self.aligner, photos, sources, seed, users)
                cloaked = dict(zip(indices, made, strict=True))
            self._cloaked[key] = (cloaked, seconds)
        return self._cloaked[key]

    @staticmethod
    def run_key(generator: CloakGenerator, seed: int, protected: Sequence[str]) -> tuple[str, str, int, tuple[str, ...]]:
        """What identifies a cloaking run: generators of one name differ in surrogates and configuration."""
        return generator.name, json.dumps(generator.params(), sort_keys=True, default=str), seed, tuple(protected)

    def embedder(self, extractor: FeatureExtractor) -> EmbeddingCache:
        name = extractor.info.name
        if name not in self._embedders:
            self._embedders[name] = EmbeddingCache(extractor, self.aligner)
        return self._embedders[name]

    def evaluate(
        self,
        cloaked: dict[int, CloakedPhoto],
        extractor: FeatureExtractor,
        make_tracker: Callable[[], Tracker] | Callable[[], FaceTracker],
        split: Split,
        protected: list[str],
        seed: int,
        *,
        countermeasure: Countermeasure | None = None,
        side: str = "uploads",
        augmentations: Sequence[Countermeasure] = (),
        config: ProtectionConfig | None = None,
    ) -> ProtectionOutcome:
        """The protocol for one (cloak, victim, tracker) cell.

        ``countermeasure`` transforms the tracker's training photos (``side="uploads"``: clean and cloaked alike,
        as the tracker cannot tell them apart), its queries (``"queries"``) or both, before it embeds them.
        ``augmentations`` is robust training: the tracker also trains on its training photos through each of
        these transforms (see ``scenarios.robust``). A ``FaceTracker`` (end-to-end fine-tuning) is bound to
        ``extractor`` and given aligned faces instead of embeddings. ``config`` replaces this bench's for the call.
        """
        if side not in COUNTERMEASURE_SIDES:
            raise ValueError(f"side must be one of {', '.join(COUNTERMEASURE_SIDES)}, got {side!r}")
        factory: Callable[[], Any] = make_tracker
        cache = self.embedder(extractor)
        if isinstance(make_tracker(), FaceTracker):
            cache = self.embedder(AlignedFaces.of(extractor))
            factory = _bound_to(make_tracker, extractor)
        upload = countermeasure if countermeasure is not None and side in ("uploads", "both") else None
        query = countermeasure if countermeasure is not None and side in ("queries", "both") else None
        clean, cloaked_emb = self._represent(cache, cloaked, upload, seed)
        queries = clean if query is upload else self._represent(cache, {}, query, seed)[0]
        views = [self._represent(cache, cloaked, transform, seed) for transform in augmentations]
        return evaluate_protection(
            factory, clean, self.identities, split, cloaked_emb, protected, config or self.config, seed,
            queries=queries, views=views,
        )

    def _represent(
        self, cache: EmbeddingCache, cloaked: dict[int, CloakedPhoto], transform: Countermeasure | None, seed: int
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Embeddings of every photo and of the cloaked ones, after ``transform`` (None: as they are).

        A transformed photo in which the victim no longer finds the face is aligned with its original's landmarks.
        """
        order = sorted(cloaked)
        originals = [self.photos[i] for i in order]
        cloaked_photos = [cloaked[i].photo for i in order]
        if transform is None:
            name = cache.extractor.info.name
            if name not in self._as_is:
                self._as_is[name] = cache.embed(self.photos, self.sources)
            clean = self._as_is[name]
        else:
            clean = cache.embed(Transformed(self.photos, transform, seed), self.sources, self.photos)
            cloaked_photos = transform.apply(cloaked_photos, seed)
        if not order:
            return clean, {}
        cloaked_emb = cache.embed(cloaked_photos, [cloaked[i].source for i in order], originals)
        return clean, dict(zip(order, cloaked_emb, strict=True))


@dataclass(frozen=True)
class ProtectionScenarioConfig:
    """Options of the protection scenario in a campaign (``{name: protection, ...}``): none beyond the grid's
    leak ratio and the protocol section's top-k and bootstrap resamples."""


class Protection:
    """Fawkes' protection protocol as a campaign scenario (``grid.scenarios: [protection]``).

    Uploads: the protected users' training photos, cloaked (a leak ratio keeps some clean). A tracker trains on
    every training photo and is queried with the users' clean test photos. Headline: PSR, with per-query outcomes
    (True = the tracker missed that clean photo). One ``ProtectionBench`` per dataset keeps cloaked photos and
    embeddings across the cells it serves.
    """

    name = "protection"
    headline = "psr"
    columns = (
        ReportColumn("psr", "PSR [95% CI]"),
        ReportColumn("top5", "top-5 PSR"),
        ReportColumn("others_acc", "others' acc"),
        ReportColumn("dssim", "DSSIM", ".4f"),
        ReportColumn("psnr", "PSNR dB"),
        ReportColumn("sec_per_image", "s/img"),
    )

    def __init__(self, config: ProtectionScenarioConfig | None = None) -> None:
        self.config = config or ProtectionScenarioConfig()
        self._benches: dict[str, ProtectionBench] = {}

    def bench(self, data: ScenarioData) -> ProtectionBench:
        if data.name not in self._benches:
            self._benches[data.name] = ProtectionBench(data.photos, list(data.sources), list(data.identities),
                                                       data.aligner)
        return self._benches[data.name]

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks:
        bench = self.bench(data)
        cloaked, seconds = bench.cloak_users(generator, data.split, list(data.protected), data.seed)
        first = cloaked[min(cloaked)] if cloaked else None
        example = None if first is None else CloakExample(
            first.source, first.crop_clean, np.clip(np.rint(first.crop_cloaked), 0, 255).astype(np.uint8))
        targets = {t.user: t.target for t in getattr(generator, "last_targets", [])} if declared_by(generator).get(
            "per_user") else {}
        key = bench.run_key(generator, data.seed, data.protected)
        notes: dict[str, Any] = {}
        if key in bench.missing_copies:
            notes["photos_without_cloaked_copy"] = bench.missing_copies[key]
        return PreparedCloaks(len(cloaked), seconds, example, targets, notes)

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        data = cell.data
        bench = self.bench(data)
        protected = list(data.protected)
        cloaked, seconds = bench.cloak_users(cell.generator, data.split, protected, data.seed)
        outcome = bench.evaluate(
            cloaked, cell.victim, cell.make_tracker, data.split, protected, data.seed,
            countermeasure=cell.countermeasure, side=cell.side, augmentations=cell.augmentations,
            config=ProtectionConfig(leak_ratio=cell.leak_ratio, topk=cell.topk, n_boot=cell.n_boot),
        )
        metrics = {"psr": outcome.psr.value, "psr_ci_low": outcome.psr.low, "psr_ci_high": outcome.psr.high,
                   "top5": outcome.topk_psr, "others_acc": outcome.others_acc,
                   **cloak_metrics(list(cloaked.values()), seconds)}
        provenance: dict[str, Any] = {"n_identities": outcome.n_identities, "n_train": outcome.n_train,
                                      "n_queries": outcome.n_queries}
        if cell.augmentations:
            # robust training: each training photo as it is, then through each transform (in this order)
            provenance["robust_training"] = {"views": 1 + len(cell.augmentations),
                                             "transforms": [a.name for a in cell.augmentations]}
        return ScenarioResult(metrics, outcome.per_user, {u: list(m) for u, m in outcome.misses.items()}, provenance)

    def cost(self, n_images: int, n_protected_train: int, n_protected_test: int) -> CellCost:
        # every photo once per victim and countermeasure (a transformed photo is a new photo), and the uploads
        return CellCost(photos_to_cloak=n_protected_train, photos_to_embed=n_images + n_protected_train)


class Transformed(LazyPhotos):
    """``photos`` through a countermeasure, one photo at a time on access (its output depends on the photo and
    the seed alone), so a transformed dataset is never held in memory."""

    def __init__(self, photos: Sequence[np.ndarray], transform: Countermeasure, seed: int) -> None:
        self.photos, self.transform, self.seed = photos, transform, seed

    def __len__(self) -> int:
        return len(self.photos)

    def photo(self, index: int) -> np.ndarray:
        return self.transform.apply([self.photos[index]], self.seed)[0]


def _bound_to(make_tracker: Callable[[], Any], extractor: FeatureExtractor) -> Callable[[], FaceTracker]:
    """A factory of face trackers that start from ``extractor`` (the victim)."""

    def make() -> FaceTracker:
        tracker: FaceTracker = make_tracker()
        return tracker.bind(cast(DifferentiableExtractor, extractor))

    return make


class AlignedFaces:
    """The identity 'extractor': a photo's aligned face itself, for trackers that train a network end to end.

    Going through ``EmbeddingCache`` gives those trackers the same detection, alignment and fallbacks as any
    victim, cached by pixel content; ``detector``: the network's own pipeline's (its ``info.detector``).
    Example: ``AlignedFaces.of(victim)``.
    """

    def __init__(self, template: str, detector: str | None = None) -> None:
        size = TEMPLATES[template].size
        self.info = ExtractorInfo(
            name=f"aligned-faces:{template}" + (f"@{detector}" if detector else ""), family="pixels",
            input_size=size, template=template, preprocessing="none: uint8 RGB aligned face",
            embedding_dim=size * size * 3, differentiable=False, license="n/a", backend="numpy", detector=detector,
        )

    @classmethod
    def of(cls, extractor: FeatureExtractor) -> AlignedFaces:
        """The faces ``extractor`` would be given: its template, found by its pipeline's detector."""
        return cls(extractor.info.template, extractor.info.detector)

    def embed(self, faces: np.ndarray) -> np.ndarray:
        return np.array(faces, dtype=np.uint8)
