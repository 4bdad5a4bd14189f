"""Clean identification accuracy of an extractor (stratified k-fold): the zoo's sanity check.

A cloak audit means little on a model that cannot tell the people apart in the first place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fawkes_eval.metrics import topk_hits
from fawkes_eval.types import Tracker


@dataclass(frozen=True)
class IdentificationResult:
    tracker: str
    accuracy: float
    fold_accuracies: tuple[float, ...]
    n_images: int
    n_identities: int


def kfold_identification(
    embeddings: np.ndarray, identities: list[str], make_tracker: Callable[[], Tracker], folds: int, seed: int
) -> IdentificationResult:
    """Mean top-1 accuracy over stratified folds (identities with fewer images than folds are kept whole in train)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.unique(identities, return_inverse=True)[1]
    counts = np.bincount(labels)
    usable = counts[labels] >= folds
    if not usable.any():
        raise ValueError(f"no identity has the {folds} images a {folds}-fold split needs")
    always_train = np.flatnonzero(~usable)
    idx = np.flatnonzero(usable)
    accs = []
    name = ""
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(idx, labels[idx]):
        train = np.concatenate([idx[tr], always_train])
        tracker = make_tracker()
        name = tracker.name
        tracker.fit(embeddings[train], labels[train])
        accs.append(float(topk_hits(tracker.rank(embeddings[idx[te]], 1), labels[idx[te]], 1).mean()))
    return IdentificationResult(name, float(np.mean(accs)), tuple(accs), len(identities), int(len(counts)))
