"""Robust training: the tracker trains on its photos as they are and through countermeasure transforms.

A tracker that expects cloaks can blunt them by training on transformed copies of every training photo (the
cloaked uploads included), as data augmentation: features that survive JPEG, blur or rescaling are the ones a
small cloak perturbs least. ``ProtectionBench.evaluate(..., augmentations=robust_augmentations())`` runs
the protocol that way; ``ProtectionOutcome.n_train`` still counts photos, each seen once per view. In a campaign,
any tracker entry takes it as an option: ``{name: logreg, robust: [jpeg:50, blur:1]}`` or ``robust: default``
(``ROBUST_AUGMENTATIONS``); the cell hands the transforms to its scenario (``ScenarioCell.augmentations``) and the
row's provenance records them (``robust_training``: views, transforms).
"""

from __future__ import annotations

from collections.abc import Sequence

from fawkes_eval.components import ROBUST_DEFAULT
from fawkes_eval.registry import COUNTERMEASURES
from fawkes_eval.types import Countermeasure

# One mid strength per countermeasure family (a campaign's ``robust: default``): a training set (1 + 6) times the
# size, each view a plausible processing a platform applies anyway.
ROBUST_AUGMENTATIONS = ROBUST_DEFAULT


def robust_augmentations(specs: Sequence[str] = ROBUST_AUGMENTATIONS) -> list[Countermeasure]:
    """The countermeasures a robust tracker trains through, by registry name (``jpeg:50``, ...)."""
    return [COUNTERMEASURES.create(spec) for spec in specs]
