"""The adaptive tracker (FaceCure's robust-feature attack) learns what it is trained for, with a real network."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from attacks.fawkes_v1 import FAWKES_V1_MODES, FawkesV1
from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms
from recognizers.trackers import FineTuneConfig
from scenarios.adaptive import AdaptiveConfig, adapt_extractor

load_rooms()
PUBLIC = ["Angelina_Jolie", "Hugo_Chavez", "Junichiro_Koizumi", "Kofi_Annan", "Serena_Williams"]
TRAIN_PER_ID, HELD_OUT_PER_ID = 4, 2
# A short white-box Fawkes run (the high budget, 20 steps) keeps the test to a few minutes on a CPU; it still
# fools dlib's network on about 40% of held-out photos (measured: 4 of 10), which adaptation must halve.
SHORT_HIGH = dataclasses.replace(FAWKES_V1_MODES["high"], steps=20, lr=25.0, n_surrogates=1)


def _one_nn_error(extractor: object, gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray,
                  query_labels: np.ndarray) -> float:
    tracker = TRACKERS.create("1nn")
    tracker.fit(extractor.embed(gallery), gallery_labels)  # type: ignore[attr-defined]
    return float(np.mean(tracker.rank(extractor.embed(queries), 1)[:, 0] != query_labels))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_adapted_extractor_recognises_held_out_cloaked_public_photos(
    demo_dataset: Dataset, aligned: Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
) -> None:
    extractor = EXTRACTORS.create("dlib-resnet-torch")
    faces, names = aligned(demo_dataset, extractor.info.template)
    train, held_out = [], []
    for person in PUBLIC:
        idx = np.flatnonzero(names == person)
        train.extend(idx[:TRAIN_PER_ID])
        held_out.extend(idx[TRAIN_PER_ID: TRAIN_PER_ID + HELD_OUT_PER_ID])
    cloak = FawkesV1([extractor], mode="high", config=SHORT_HIGH)  # type: ignore[list-item]
    cloaked = np.clip(np.rint(cloak.cloak(faces[train + held_out], seed=0).faces), 0, 255).astype(np.uint8)
    cloaked_train, cloaked_held_out = cloaked[: len(train)], cloaked[len(train):]
    labels = names[train]

    adapted, seconds = adapt_extractor(
        extractor, faces[train], cloaked_train, labels, cloak.name,  # type: ignore[arg-type]
        AdaptiveConfig(FineTuneConfig(epochs=6, lr=1e-4, head_lr=1e-2, batch_size=16)),
    )
    before = _one_nn_error(extractor, faces[train], labels, cloaked_held_out, names[held_out])
    after = _one_nn_error(adapted, faces[train], labels, cloaked_held_out, names[held_out])
    assert before >= 0.2, f"the short cloak should fool the unadapted network on its own crops (error {before})"
    assert after <= 0.5 * before, f"1-NN error on held-out cloaked photos: before {before}, after {after}"
    assert seconds > 0
    assert adapted.info.name == f"dlib-resnet-torch+robust[{cloak.name}]"
    assert adapted.info.template == extractor.info.template
    # the original network is left as it was (the tracker fine-tunes a copy)
    assert _one_nn_error(extractor, faces[train], labels, cloaked_held_out, names[held_out]) == before


def test_adapt_extractor_rejects_unpaired_inputs() -> None:
    extractor = EXTRACTORS.create("mobileface")
    faces = np.zeros((2, 112, 112, 3), np.uint8)
    with pytest.raises(ValueError, match="must pair up"):
        adapt_extractor(extractor, faces, faces[:1], np.array([0, 1]), "x")  # type: ignore[arg-type]
