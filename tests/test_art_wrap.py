"""A zoo extractor plus a tracker head as ART's own PyTorchClassifier: it decides as the tracker does, ART's PGD
lowers its accuracy on real faces, and ART's preprocessing defences plug in."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fawkes_eval.data import Dataset
from fawkes_eval.registry import TRACKERS
from fawkes_eval.rooms import load_rooms
from recognizers.art_classifier import art_classifier, tracker_head
from recognizers.tfjs_models import MobileFace

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train faces, train labels, test faces, test labels


@pytest.fixture(scope="module")
def mobileface() -> MobileFace:
    return MobileFace(device="cpu")


@pytest.fixture(scope="module")
def split(demo_dataset: Dataset, aligned: Aligned) -> Split:
    """Seven training and three test faces per identity of the bundled sample (its fixed order)."""
    faces, labels = aligned(demo_dataset, "arcface-112")
    position = np.array([np.sum(labels[:i] == label) for i, label in enumerate(labels)])
    train = position < 7
    return faces[train], labels[train], faces[~train], labels[~train]


def nchw(faces: np.ndarray) -> np.ndarray:
    return faces.transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.parametrize("tracker", ["1nn", "logreg"])
def test_classifier_decides_as_the_tracker(tracker: str, mobileface: MobileFace, split: Split) -> None:
    from art.estimators.classification import PyTorchClassifier

    train_faces, train_labels, test_faces, _ = split
    train_embeddings = mobileface.embed(train_faces)
    head, classes = tracker_head(tracker, train_embeddings, train_labels)
    classifier = art_classifier(mobileface, head, len(classes))
    assert isinstance(classifier, PyTorchClassifier)
    load_rooms()
    reference = TRACKERS.create(tracker)
    reference.fit(train_embeddings, train_labels)
    predicted = classes[classifier.predict(nchw(test_faces)).argmax(1)]
    np.testing.assert_array_equal(predicted, reference.rank(mobileface.embed(test_faces), 1)[:, 0])


@pytest.mark.slow
def test_art_pgd_lowers_accuracy(mobileface: MobileFace, split: Split) -> None:
    from art.attacks.evasion import ProjectedGradientDescent

    train_faces, train_labels, test_faces, test_labels = split
    head, classes = tracker_head("logreg", mobileface.embed(train_faces), train_labels)
    classifier = art_classifier(mobileface, head, len(classes))
    x = nchw(test_faces)
    clean = float(np.mean(classes[classifier.predict(x).argmax(1)] == test_labels))
    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=8.0, eps_step=2.0, max_iter=10, num_random_init=0,
                                      batch_size=32, verbose=False)
    adversarial = attack.generate(x=x)
    assert np.abs(adversarial - x).max() <= 8.0 + 1e-3 and adversarial.min() >= 0 and adversarial.max() <= 255
    attacked = float(np.mean(classes[classifier.predict(adversarial).argmax(1)] == test_labels))
    assert clean >= 0.9 and attacked <= clean - 0.5, (clean, attacked)
    # Stored as 8-bit photos and embedded by the extractor itself, the attack still works on the real tracker.
    stored = np.clip(np.round(adversarial), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    reference = TRACKERS.create("logreg")
    reference.fit(mobileface.embed(train_faces), train_labels)
    assert float(np.mean(reference.rank(mobileface.embed(stored), 1)[:, 0] == test_labels)) <= clean - 0.5


def test_art_defence_runs_inside_the_classifier(mobileface: MobileFace, split: Split) -> None:
    from art.defences.preprocessor import JpegCompression

    train_faces, train_labels, test_faces, test_labels = split
    head, classes = tracker_head("1nn", mobileface.embed(train_faces), train_labels)
    jpeg = JpegCompression(clip_values=(0.0, 255.0), quality=30, channels_first=True)
    defended = art_classifier(mobileface, head, len(classes), defences=[jpeg])
    plain = art_classifier(mobileface, head, len(classes))
    x = nchw(test_faces)
    scores, plain_scores = defended.predict(x), plain.predict(x)
    assert not np.allclose(scores, plain_scores)  # the JPEG round trip happened
    assert float(np.mean(classes[scores.argmax(1)] == test_labels)) >= 0.8  # and the tracker still works


def test_unknown_tracker_head_is_refused() -> None:
    with pytest.raises(ValueError, match="no differentiable head"):
        tracker_head("enroll", np.zeros((2, 4), np.float32), np.array([0, 1]))
