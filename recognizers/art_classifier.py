"""A differentiable extractor plus a tracker head, wrapped as an ART ``PyTorchClassifier``.

The Adversarial Robustness Toolbox (ART, Trusted-AI/adversarial-robustness-toolbox) attacks and defends
classifiers; a tracker on top of an embedding is one. ``tracker_head`` turns a tracker's decision rule into a
PyTorch module over embeddings (1-NN: the best cosine similarity per identity; logistic regression: its fitted
linear map on L2-normalised embeddings), and ``art_classifier`` joins ``extractor.torch_module()`` and that head
into ART's own ``PyTorchClassifier``, so ART's evasion attacks (PGD, C&W, ...) and preprocessing defences
(``JpegCompression``, ``SpatialSmoothing``, ...) run against the very model the protocol measures.

Shape: the classifier takes float (N, 3, S, S) RGB in 0..255 (``clip_values=(0, 255)``) at the extractor's
template and returns (N, K) scores over ``classes`` (sorted identity labels, the trackers' order).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fawkes_eval.align import TEMPLATES
from fawkes_eval.types import DifferentiableExtractor
from recognizers.trackers import LogisticRegressionTracker

HEADS = ("1nn", "logreg")


class NearestNeighborHead(nn.Module):
    """Scores per identity = ``scale`` x its best cosine similarity to the query (the 1-NN tracker's ranking)."""

    def __init__(self, gallery: np.ndarray, labels: np.ndarray, scale: float = 30.0) -> None:
        super().__init__()
        classes = np.unique(labels)
        self.gallery: torch.Tensor
        self.member: torch.Tensor
        self.register_buffer("gallery", F.normalize(torch.tensor(gallery, dtype=torch.float32), dim=1))
        member = torch.tensor(np.asarray(labels)[None, :] == classes[:, None])  # (K, G)
        self.register_buffer("member", member)
        self.scale = scale  # cosines are within [-1, 1]: scaled, the cross-entropy has useful gradients

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        sims = F.normalize(embeddings, dim=1) @ self.gallery.T  # (N, G)
        masked = sims[:, None, :].masked_fill(~self.member[None], float("-inf"))  # (N, K, G)
        return self.scale * masked.amax(dim=2)


class LinearHead(nn.Module):
    """A fitted multinomial logistic regression on L2-normalised embeddings, as logits."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        super().__init__()
        self.linear = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(coef, dtype=torch.float32))
            self.linear.bias.copy_(torch.tensor(intercept, dtype=torch.float32))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(embeddings, dim=1))


def tracker_head(tracker: str, embeddings: np.ndarray, labels: np.ndarray) -> tuple[nn.Module, np.ndarray]:
    """A head that ranks identities as tracker ``tracker`` trained on (embeddings, labels) does; and the classes."""
    classes = np.unique(labels)
    if tracker == "1nn":
        return NearestNeighborHead(embeddings, labels), classes
    if tracker == "logreg":
        fitted = LogisticRegressionTracker()
        fitted.fit(embeddings, labels)
        model = fitted._model  # the tracker's own scikit-learn fit, so the head decides exactly as it does
        coef, intercept = model.coef_, model.intercept_
        if len(classes) == 2:  # scikit-learn keeps one row for two classes: logits (0, w.x + b)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        return LinearHead(coef, intercept), classes
    raise ValueError(f"no differentiable head for tracker {tracker!r}; heads exist for {HEADS}")


def art_classifier(extractor: DifferentiableExtractor, head: nn.Module, n_classes: int,
                   defences: Sequence[Any] = (), device: str | None = None) -> Any:
    """ART's ``PyTorchClassifier`` over ``extractor`` then ``head``; ``defences``: ART preprocessors, applied first.

    ``device``: "cpu" or "cuda" (None: the extractor module's device).
    """
    from art.estimators.classification import PyTorchClassifier

    backbone = extractor.torch_module()
    device = device or next(itertools.chain(backbone.parameters(), backbone.buffers()), torch.empty(0)).device.type
    size = TEMPLATES[extractor.info.template].size
    model = nn.Sequential(backbone, head.to(device)).eval()
    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=(3, size, size), nb_classes=n_classes,
        clip_values=(0.0, 255.0), channels_first=True, preprocessing_defences=list(defences) or None,
        device_type="gpu" if device.startswith("cuda") else "cpu",
    )
