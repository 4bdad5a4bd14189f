"""Trackers: what a third party builds on embeddings to name the people in new photos.

Each is trained on labelled embeddings (``fit``) and answers a ranked list of identities per query
(``rank``). Labels are small integers; the scenario maps them to names. Registered: ``1nn``, ``logreg``, ``mlp``
(heads on a frozen extractor), ``enroll-search:1e-2`` / ``:1e-3`` (a ``CalibratedTracker``: nearest identity above
a threshold set at a false-accept rate, else ``UNKNOWN``), and ``finetune`` (a ``FaceTracker``: trains a zoo network
end to end, so it takes aligned faces instead of embeddings). torch and scikit-learn are imported on first use.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fawkes_eval.registry import TRACKERS
from fawkes_eval.types import DifferentiableExtractor

if TYPE_CHECKING:
    import torch


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _rank_by_probability(model: Any, embeddings: np.ndarray, k: int) -> np.ndarray:
    """Top-k labels of a fitted scikit-learn classifier, most probable first."""
    proba = model.predict_proba(_l2_normalise(embeddings))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return np.asarray(model.classes_)[order]


@TRACKERS.register("1nn")
class NearestNeighbor:
    """1-NN by cosine similarity; identities ranked by their most similar training image."""

    name = "1nn"

    queries_per_chunk = 256  # bounds the (queries x gallery) similarity matrix, whatever the dataset's size

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        # the gallery sorted by label, so that each class is one run of columns
        by_label = np.argsort(np.asarray(labels), kind="stable")
        self._gallery = _l2_normalise(embeddings)[by_label]
        self._classes, self._starts = np.unique(np.asarray(labels)[by_label], return_index=True)

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        return self.rank_with_scores(embeddings, k)[0]

    def rank_with_scores(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k labels and each one's best cosine similarity to the query, both (N, k)."""
        queries = _l2_normalise(embeddings)
        k = min(k, len(self._classes))
        labels, scores = [np.zeros((0, k), self._classes.dtype)], [np.zeros((0, k))]
        for first in range(0, len(queries), self.queries_per_chunk):
            sims = queries[first : first + self.queries_per_chunk] @ self._gallery.T
            per_class = np.maximum.reduceat(sims, self._starts, axis=1)  # best similarity per class
            order = np.argsort(-per_class, axis=1, kind="stable")[:, :k]
            labels.append(self._classes[order])
            scores.append(np.take_along_axis(per_class, order, axis=1))
        return np.concatenate(labels), np.concatenate(scores)


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
        return _rank_by_probability(self._model, embeddings, k)


UNKNOWN = -1  # the label a thresholded tracker answers when no identity is similar enough


@dataclass(frozen=True)
class MlpConfig:
    hidden: int = 256  # one hidden layer: enough for a few hundred identities on 128..1024-D embeddings
    alpha: float = 1e-4  # L2 penalty
    max_iter: int = 500
    seed: int = 0  # weight initialisation and batch order (scikit-learn's random_state)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.max_iter < 1 or self.alpha < 0:
            raise ValueError(f"MlpConfig needs hidden >= 1, max_iter >= 1, alpha >= 0; got {self}")


@TRACKERS.register("mlp")
class MlpTracker:
    """An MLP head (one ReLU hidden layer, softmax) on L2-normalised embeddings (scikit-learn, Adam, seeded)."""

    name = "mlp"

    def __init__(self, config: MlpConfig | None = None) -> None:
        self.config = config or MlpConfig()

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        from sklearn.neural_network import MLPClassifier

        c = self.config
        self._model = MLPClassifier(hidden_layer_sizes=(c.hidden,), alpha=c.alpha, max_iter=c.max_iter,
                                    random_state=c.seed)
        with warnings.catch_warnings():  # a small training set may stop at max_iter; the fit is still usable
            warnings.simplefilter("ignore", category=UserWarning)
            self._model.fit(_l2_normalise(embeddings), labels)

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        return _rank_by_probability(self._model, embeddings, k)


@runtime_checkable
class CalibratedTracker(Protocol):
    """A tracker with a decision threshold that is set on clean labelled data before it is fitted."""

    name: str

    def calibrate(self, embeddings: np.ndarray, labels: np.ndarray) -> float: ...

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None: ...

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray: ...


def impostor_similarities(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of embeddings with different labels (each unordered pair once)."""
    x = _l2_normalise(embeddings)
    labels = np.asarray(labels)
    upper = np.triu_indices(len(x), k=1)
    sims = (x @ x.T)[upper]
    return sims[labels[upper[0]] != labels[upper[1]]]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The similarity that a share ``far`` of impostor pairs reaches or exceeds (the 1 - far quantile)."""
    impostor = np.asarray(impostor, dtype=np.float64)
    if not 0.0 < far < 1.0:
        raise ValueError(f"false-accept rate must be in (0, 1), got {far}")
    if len(impostor) * far < 1.0:
        raise ValueError(f"calibrating at FAR {far:g} needs at least {int(np.ceil(1 / far))} impostor pairs, "
                         f"got {len(impostor)}")
    return float(np.quantile(impostor, 1.0 - far, method="higher"))


@dataclass(frozen=True)
class EnrollSearchConfig:
    far: float = 1e-2  # false-accept rate on clean impostor pairs at which the threshold is set

    def __post_init__(self) -> None:
        if not 0.0 < self.far < 1.0:
            raise ValueError(f"EnrollSearchConfig.far must be in (0, 1), got {self.far}")


def _far_label(far: float) -> str:
    exponent = np.log10(far)
    return f"1e{int(round(exponent))}" if np.isclose(exponent, round(exponent)) else f"{far:g}"


@TRACKERS.register("enroll-search", modes={"1e-2": {"far": 1e-2}, "1e-3": {"far": 1e-3}})
class EnrollSearchTracker:
    """Enroll-and-search, as commercial face APIs are used: the nearest enrolled identity by cosine similarity
    if that similarity clears a threshold, else ``UNKNOWN`` (-1).

    The threshold is the similarity a share ``far`` of clean impostor pairs (different identities) reaches:
    ``calibrate`` sets it on clean labelled embeddings; ``fit`` enrols the gallery (and, if ``calibrate`` was
    not called, calibrates on the gallery itself, which is right only for a clean gallery). ``rank`` lists the
    identities that clear the threshold, best first, padded with ``UNKNOWN``.
    """

    def __init__(self, far: float = 1e-2, config: EnrollSearchConfig | None = None) -> None:
        self.config = config or EnrollSearchConfig(far=far)
        self.name = f"enroll-search:{_far_label(self.config.far)}"
        self.threshold: float | None = None
        self._nearest = NearestNeighbor()

    def calibrate(self, embeddings: np.ndarray, labels: np.ndarray) -> float:
        self.threshold = threshold_at_far(impostor_similarities(embeddings, labels), self.config.far)
        return self.threshold

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        if self.threshold is None:
            self.calibrate(embeddings, labels)
        self._nearest.fit(embeddings, labels)

    def rank(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        assert self.threshold is not None, "fit() first"
        ranked, best = self._nearest.rank_with_scores(embeddings, k)
        return np.where(best >= self.threshold, ranked, UNKNOWN)


@runtime_checkable
class FaceTracker(Protocol):
    """A tracker that trains a network itself. ``bind`` hands it the differentiable extractor to start from;
    then ``fit`` and ``rank`` take aligned uint8 faces (N, S, S, 3) at that extractor's template, not embeddings.
    """

    name: str

    def bind(self, extractor: DifferentiableExtractor) -> FaceTracker: ...

    def fit(self, faces: np.ndarray, labels: np.ndarray) -> None: ...

    def rank(self, faces: np.ndarray, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 4
    lr: float = 1e-4  # Adam, for the network's own weights: small, so that it adapts rather than forgets
    head_lr: float = 1e-2  # Adam, for the classifier head
    batch_size: int = 32
    scale: float = 16.0  # cosine-softmax temperature
    flip: bool = True  # random horizontal flips as augmentation
    seed: int = 0  # batch order and flips

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or min(self.lr, self.head_lr, self.scale) <= 0:
            raise ValueError(f"FineTuneConfig needs epochs >= 1, batch_size >= 1 and positive rates; got {self}")


def cosine_head(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class weights imprinted from embeddings: each class's normalised mean direction, (C, D)."""
    import torch
    import torch.nn.functional as F

    unit = F.normalize(embeddings, dim=1)
    means = torch.zeros(n_classes, unit.shape[1], dtype=unit.dtype, device=unit.device).index_add_(0, labels, unit)
    return F.normalize(means, dim=1)


def train_classifier(
    module: torch.nn.Module, faces: np.ndarray, labels: np.ndarray, n_classes: int, config: FineTuneConfig
) -> torch.Tensor:
    """Fine-tune ``module`` (every weight) with a cosine-softmax head on ``labels`` (0..n_classes-1); returns
    the head. ``faces``: uint8 (N, S, S, 3) RGB; the module maps float (N, 3, S, S) 0..255 to embeddings."""
    import torch
    import torch.nn.functional as F

    device = next(module.parameters()).device
    for p in module.parameters():
        p.requires_grad_(True)
    target = torch.as_tensor(labels, dtype=torch.long, device=device)
    with torch.no_grad():
        start = torch.cat([module(_to_input(faces[i: i + config.batch_size], device))
                           for i in range(0, len(faces), config.batch_size)])
    head = torch.nn.Parameter(cosine_head(start, target, n_classes))
    optimiser = torch.optim.Adam([{"params": list(module.parameters()), "lr": config.lr},
                                  {"params": [head], "lr": config.head_lr}])
    generator = torch.Generator().manual_seed(config.seed)
    module.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(faces), generator=generator)
        for i in range(0, len(faces), config.batch_size):
            batch = order[i: i + config.batch_size]
            x = _to_input(faces[batch.numpy()], device)
            if config.flip:
                flipped = (torch.rand(len(batch), generator=generator) < 0.5).to(device)
                x = torch.where(flipped[:, None, None, None], x.flip(3), x)
            logits = config.scale * F.normalize(module(x), dim=1) @ F.normalize(head, dim=1).T
            loss = F.cross_entropy(logits, target[batch.to(device)])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return F.normalize(head.detach(), dim=1)


def _to_input(faces: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    # torch.tensor copies: callers may pass read-only arrays
    return torch.tensor(faces, device=device).permute(0, 3, 1, 2).float()


@TRACKERS.register("finetune")
class FineTuneTracker:
    """End-to-end fine-tuning: a copy of a differentiable zoo network is trained, every weight, with a
    cosine-softmax head (imprinted from the class means) on the training faces; the strongest trained classifier.

    Input: aligned uint8 faces at the bound extractor's template (``bind`` first; the protection scenario binds
    the victim). Arguments: ``FineTuneConfig``. ``seconds``: wall time of the last ``fit``.
    """

    name = "finetune"

    def __init__(self, config: FineTuneConfig | None = None, extractor: DifferentiableExtractor | None = None) -> None:
        self.config = config or FineTuneConfig()
        self.extractor = extractor
        self.seconds = 0.0

    def bind(self, extractor: DifferentiableExtractor) -> FineTuneTracker:
        if not extractor.info.differentiable:
            raise ValueError(f"finetune needs a differentiable extractor; {extractor.info.name} is not")
        self.extractor = extractor
        return self

    def fit(self, faces: np.ndarray, labels: np.ndarray) -> None:
        if self.extractor is None:
            raise RuntimeError("FineTuneTracker.fit: bind(extractor) first")
        start = time.perf_counter()
        self._classes, index = np.unique(np.asarray(labels), return_inverse=True)
        self._module = copy.deepcopy(self.extractor.torch_module())
        self._head = train_classifier(self._module, faces, index, len(self._classes), self.config)
        self.seconds = time.perf_counter() - start

    def rank(self, faces: np.ndarray, k: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        device = self._head.device
        with torch.inference_mode():
            scores = torch.cat([
                F.normalize(self._module(_to_input(faces[i: i + self.config.batch_size], device)), dim=1) @ self._head.T
                for i in range(0, len(faces), self.config.batch_size)
            ]).cpu().numpy()
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self._classes[order]
