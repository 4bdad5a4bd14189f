"""Trackers: what a third party builds on embeddings to name the people in new photos.

Each is trained on labelled embeddings (``fit``) and answers a ranked list of identities per query
(``rank``). Labels are small integers; the scenario maps them to names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fawkes_eval.registry import TRACKERS


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@TRACKERS.register("1nn")
class NearestNeighbor:
    """1-NN by cosine similarity; identities ranked by their most similar training image."""

    name = "1nn"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        self._gallery = _l2_normalise(embeddings)
        self._labels = np.asarray(labels)
        self._classes = np.unique(self._labels)

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        sims = _l2_normalise(embeddings) @ self._gallery.T
        # best similarity per class, then classes by that score
        per_class = np.stack([sims[:, self._labels == c].max(axis=1) for c in self._classes], axis=1)
        order = np.argsort(-per_class, axis=1, kind="stable")[:, :k]
        return self._classes[order]


@dataclass(frozen=True)
class LogisticConfig:
    c: float = 10.0  # inverse regularisation; embeddings are unit length, so weak regularisation fits best
    max_iter: int = 2000


@TRACKERS.register("logreg")
class LogisticRegressionTracker:
    """Multinomial logistic regression on L2-normalised embeddings (scikit-learn, lbfgs, deterministic)."""

    name = "logreg"

    def __init__(self, config: LogisticConfig | None = None) -> None:
        self.config = config or LogisticConfig()

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self._model = LogisticRegression(C=self.config.c, max_iter=self.config.max_iter)
        self._model.fit(_l2_normalise(embeddings), labels)

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        proba = self._model.predict_proba(_l2_normalise(embeddings))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return np.asarray(self._model.classes_)[order]
