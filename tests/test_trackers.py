from __future__ import annotations

import numpy as np
import pytest

from fawkes_eval.registry import TRACKERS
from fawkes_eval.rooms import load_rooms

load_rooms()


@pytest.mark.parametrize("name", ["1nn", "logreg"])
def test_tracker_ranks_true_class_first_on_separable_data(name: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    labels = np.repeat(np.arange(5), 8)
    x = centres[labels] + 0.05 * rng.normal(size=(40, 16))
    tracker = TRACKERS.create(name)
    tracker.fit(x, labels)
    ranked = tracker.rank(centres + 0.05 * rng.normal(size=(5, 16)), 3)
    assert ranked.shape == (5, 3)
    assert ranked[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert all(len(set(r)) == 3 for r in ranked.tolist())  # distinct identities in a ranking


def test_1nn_follows_the_nearest_training_image() -> None:
    tracker = TRACKERS.create("1nn")
    tracker.fit(np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), np.array([0, 1, 2]))
    assert tracker.rank(np.array([[0.72, 0.69]]), 1)[0, 0] == 2
