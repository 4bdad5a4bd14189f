from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms
from recognizers.trackers import (
    UNKNOWN,
    EnrollSearchTracker,
    FaceTracker,
    FineTuneConfig,
    FineTuneTracker,
    impostor_similarities,
    threshold_at_far,
)

load_rooms()


@pytest.mark.parametrize("name", ["1nn", "logreg", "mlp"])
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


def test_mlp_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(60, 8)), np.repeat(np.arange(6), 10)
    queries = rng.normal(size=(20, 8))
    ranks = []
    for _ in range(2):
        tracker = TRACKERS.create("mlp")
        tracker.fit(x, labels)
        ranks.append(tracker.rank(queries, 3))
    np.testing.assert_array_equal(ranks[0], ranks[1])


def test_enroll_search_answers_unknown_below_the_threshold() -> None:
    tracker = EnrollSearchTracker(far=0.25)
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    tracker.fit(gallery, np.array([0, 0, 1, 1]))
    assert tracker.threshold is not None
    ranked = tracker.rank(np.array([[1.0, 0.02], [-1.0, -1.0]]), 2)
    assert ranked[0, 0] == 0
    assert ranked[1].tolist() == [UNKNOWN, UNKNOWN]  # opposite to everyone enrolled
    assert TRACKERS.create("enroll-search:1e-3").name == "enroll-search:1e-3"


def test_threshold_needs_enough_impostor_pairs() -> None:
    with pytest.raises(ValueError, match="at least 1000 impostor pairs"):
        threshold_at_far(np.zeros(999), 1e-3)
    assert threshold_at_far(np.arange(100) / 100, 0.05) == pytest.approx(0.95)


@pytest.mark.parametrize("far", [0.01, 0.05])
def test_enroll_search_threshold_achieves_its_far_on_clean_impostor_pairs(
    demo_dataset: Dataset, aligned: Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]], far: float
) -> None:
    """Calibrated on half of each identity's LFW photos, checked on impostor pairs of the other half."""
    extractor = EXTRACTORS.create("dlib-resnet")
    faces, names = aligned(demo_dataset, extractor.info.template)
    embeddings = extractor.embed(faces)
    half = np.arange(len(names)) % 2 == 0
    tracker = EnrollSearchTracker(far=far)
    threshold = tracker.calibrate(embeddings[half], names[half])
    held_out = impostor_similarities(embeddings[~half], names[~half])
    achieved = float(np.mean(held_out >= threshold))
    # binomial spread over ~1100 held-out pairs, plus the calibration set's own sampling error
    assert far / 3 <= achieved <= far * 3, f"FAR {far}: achieved {achieved:.4f} on {len(held_out)} pairs"


@pytest.mark.slow
def test_finetune_tracker_trains_a_zoo_network_end_to_end(
    demo_dataset: Dataset, aligned: Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
) -> None:
    extractor = EXTRACTORS.create("mobileface")
    faces, names = aligned(demo_dataset, extractor.info.template)
    train = np.arange(len(names)) % 10 < 6
    labels = np.unique(names, return_inverse=True)[1]
    weights_before = [p.detach().clone() for p in extractor.torch_module().parameters()]
    tracker = FineTuneTracker(FineTuneConfig(epochs=2, batch_size=20)).bind(extractor)  # type: ignore[arg-type]
    assert isinstance(tracker, FaceTracker)
    tracker.fit(faces[train], labels[train])
    ranked = tracker.rank(faces[~train], 3)
    assert ranked.shape == (int((~train).sum()), 3)
    assert np.mean(ranked[:, 0] == labels[~train]) >= 0.8
    assert tracker.seconds > 0
    # a copy was trained: the zoo model's own weights are untouched
    for before, after in zip(weights_before, extractor.torch_module().parameters(), strict=True):
        assert bool((before == after).all())


def test_finetune_tracker_needs_a_bound_differentiable_network() -> None:
    with pytest.raises(RuntimeError, match="bind"):
        FineTuneTracker().fit(np.zeros((2, 112, 112, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(ValueError, match="not"):
        FineTuneTracker().bind(EXTRACTORS.create("dlib-resnet"))  # type: ignore[arg-type]
