"""Robust training: the tracker trains on its photos as they are and through countermeasure transforms.

A tracker that expects cloaks can blunt them by training on transformed copies of every training photo (the
cloaked uploads included), as data augmentation: features that survive JPEG, blur or rescaling are the ones a
small cloak perturbs least. ``ProtectionBench.evaluate(..., augmentations=robust_augmentations())`` runs
the protocol that way; ``ProtectionOutcome.n_train`` still counts photos, each seen once per view.
"""

from __future__ import annotations

from collections.abc import Sequence

from fawkes_eval.registry import COUNTERMEASURES
from fawkes_eval.types import Countermeasure

# One mid strength per countermeasure family: a training set (1 + 6) times the size, each view a plausible
# processing a platform applies anyway.
ROBUST_AUGMENTATIONS = ("jpeg:50", "blur:1", "rescale:0.5", "median:3", "gaussian-noise:4", "bit-depth:5")


def robust_augmentations(specs: Sequence[str] = ROBUST_AUGMENTATIONS) -> list[Countermeasure]:
    """The countermeasures a robust tracker trains through, by registry name (``jpeg:50``, ...)."""
    return [COUNTERMEASURES.create(spec) for spec in specs]
