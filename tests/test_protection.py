"""The protection protocol end to end, with real models, real photos and the real cloak."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.data import Dataset, split_dataset
from fawkes_eval.registry import CLOAKS, EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms
from scenarios.protection import ProtectionBench, ProtectionConfig, evaluate_protection

pytestmark = pytest.mark.heavy

load_rooms()
PROTECTED = ["Hugo_Chavez", "Laura_Bush", "Tiger_Woods"]


@pytest.fixture(scope="module")
def scenario(demo_dataset: Dataset, aligner: FaceAligner) -> ProtectionBench:
    photos = [load_photo(r.path) for r in demo_dataset.records]
    return ProtectionBench(
        photos, [str(r.path) for r in demo_dataset.records], [r.identity for r in demo_dataset.records], aligner,
        ProtectionConfig(n_boot=500),
    )


def _tracker(name: str) -> Callable[[], object]:
    return lambda: TRACKERS.create(name)


@pytest.mark.parametrize("tracker", ["1nn", "logreg"])
def test_without_cloak_psr_is_the_clean_error_rate(
    demo_dataset: Dataset, scenario: ProtectionBench, tracker: str
) -> None:
    victim = EXTRACTORS.create("dlib-resnet")
    split = split_dataset(demo_dataset, seed=0)
    clean = scenario.embedder(victim).embed(scenario.photos, scenario.sources)
    same = {i: clean[i] for u in PROTECTED for i in split.train[u]}  # "cloaked" == clean
    outcome = evaluate_protection(
        _tracker(tracker), clean, scenario.identities, split, same, PROTECTED, ProtectionConfig(n_boot=500), 0  # type: ignore[arg-type]
    )
    t = TRACKERS.create(tracker)
    train = np.array(sorted(i for v in split.train.values() for i in v))
    names = sorted(split.train)
    labels = np.array([names.index(x) for x in scenario.identities])
    t.fit(clean[train], labels[train])
    errors = [float(np.mean(t.rank(clean[split.test[u]], 1)[:, 0] != labels[split.test[u]])) for u in PROTECTED]
    assert outcome.psr.value == pytest.approx(float(np.mean(errors)))
    assert outcome.others_acc >= 0.9


@pytest.mark.slow
def test_white_box_high_protects_and_noise_does_not(demo_dataset: Dataset, scenario: ProtectionBench) -> None:
    surrogate = EXTRACTORS.create("dlib-resnet-torch")
    victim = EXTRACTORS.create("dlib-resnet")  # same family as the surrogate: white-box
    split = split_dataset(demo_dataset, seed=0)
    results = {}
    for spec in ("fawkes-v1.0:high", "noise:high"):
        generator = CLOAKS.create(spec, surrogates=[surrogate]) if spec.startswith("fawkes") else CLOAKS.create(
            spec, template=surrogate.info.template)
        cloaked, _ = scenario.cloak_users(generator, split, PROTECTED, seed=0)
        assert all(c.crop_dssim <= 1.1 * 0.017 for c in cloaked.values())
        results[spec] = scenario.evaluate(cloaked, victim, _tracker("1nn"), split, PROTECTED, seed=0)
    assert results["fawkes-v1.0:high"].psr.value >= 0.8
    assert results["noise:high"].psr.value <= 0.2
    assert min(r.others_acc for r in results.values()) >= 0.9
    assert results["fawkes-v1.0:high"].psr.n_groups == len(PROTECTED)
