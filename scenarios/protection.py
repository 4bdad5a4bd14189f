"""The protection protocol (Fawkes paper; FaceCure's evaluation uses the same definition).

Per protected user, one at a time: their training photos are replaced by cloaked versions (a leak ratio keeps
some clean), the tracker is trained on every training photo, and queried with the user's clean test photos.
Protection success rate (PSR) = 1 - top-1 accuracy on those queries; the tracker's accuracy on the other
identities' test photos shows it still works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fawkes_eval.align import FaceAligner
from fawkes_eval.data import Split
from fawkes_eval.metrics import RateCI, hierarchical_bootstrap, topk_hits
from fawkes_eval.types import CloakGenerator, FeatureExtractor, Tracker
from scenarios.photos import CloakedPhoto, EmbeddingCache, cloak_photos


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


def evaluate_protection(
    make_tracker: Callable[[], Tracker],
    clean: np.ndarray,
    identities: list[str],
    split: Split,
    cloaked: dict[int, np.ndarray],
    protected: list[str],
    config: ProtectionConfig,
    seed: int,
) -> ProtectionOutcome:
    """Run the protocol. ``clean``: (N, D) embeddings of every record; ``cloaked``: record index -> embedding
    of its cloaked version, for every training record of every protected user."""
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
        x_train = clean[train_idx].copy()
        position = {int(i): p for p, i in enumerate(train_idx)}
        for i in user_train:
            if i not in leaked:
                x_train[position[i]] = cloaked[i]
        tracker = make_tracker()
        tracker.fit(x_train, labels[train_idx])

        queries = np.array(split.test[user])
        ranked = tracker.rank(clean[queries], config.topk)
        miss = ~topk_hits(ranked, labels[queries], 1)
        failures.append(miss.astype(float))
        per_user[user] = float(miss.mean())
        topk_misses.append(~topk_hits(ranked, labels[queries], config.topk))
        if len(others_test):
            others_acc.append(float(topk_hits(tracker.rank(clean[others_test], 1), labels[others_test], 1).mean()))

    return ProtectionOutcome(
        psr=hierarchical_bootstrap(failures, seed=seed, n_boot=config.n_boot),
        per_user=per_user,
        topk_psr=float(np.mean(np.concatenate(topk_misses))),
        others_acc=float(np.mean(others_acc)) if others_acc else float("nan"),
        n_identities=len(names),
        n_train=len(train_idx),
        n_queries=sum(len(split.test[u]) for u in protected),
    )



class ProtectionScenario:
    """The protocol over one dataset, with what is costly computed once and reused across cells.

    Cloaked photos are kept per (cloak, seed) and embeddings per victim (by pixel content), so a grid of
    cloaks x victims x trackers cloaks each photo once per cloak and embeds each photo once per victim.
    """

    name = "protection"

    def __init__(
        self,
        photos: list[np.ndarray],
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
        self._cloaked: dict[tuple[str, int], tuple[dict[int, CloakedPhoto], float]] = {}
        self._embedders: dict[str, EmbeddingCache] = {}

    def cloak_users(
        self, generator: CloakGenerator, split: Split, protected: list[str], seed: int
    ) -> tuple[dict[int, CloakedPhoto], float]:
        """Cloak every training photo of the protected users; returns them by record index, and seconds."""
        key = (generator.name, seed)
        if key not in self._cloaked:
            indices = [i for user in protected for i in split.train[user]]
            cloaked, seconds = cloak_photos(
                generator, self.aligner, [self.photos[i] for i in indices], [self.sources[i] for i in indices], seed
            )
            self._cloaked[key] = (dict(zip(indices, cloaked, strict=True)), seconds)
        return self._cloaked[key]

    def embedder(self, extractor: FeatureExtractor) -> EmbeddingCache:
        name = extractor.info.name
        if name not in self._embedders:
            self._embedders[name] = EmbeddingCache(extractor, self.aligner)
        return self._embedders[name]

    def evaluate(
        self,
        cloaked: dict[int, CloakedPhoto],
        extractor: FeatureExtractor,
        make_tracker: Callable[[], Tracker],
        split: Split,
        protected: list[str],
        seed: int,
    ) -> ProtectionOutcome:
        cache = self.embedder(extractor)
        clean = cache.embed(self.photos, self.sources)
        order = sorted(cloaked)
        cloaked_emb = cache.embed(
            [cloaked[i].photo for i in order], [cloaked[i].source for i in order], [self.photos[i] for i in order]
        )
        return evaluate_protection(
            make_tracker, clean, self.identities, split, dict(zip(order, cloaked_emb, strict=True)),
            protected, self.config, seed,
        )
