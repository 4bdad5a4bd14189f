"""Threat models through the protection protocol with real models and LFW photos: trackers, countermeasures,
robust training, leak ratio, and the paired statistics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.data import Dataset, Split, split_dataset
from fawkes_eval.metrics import hierarchical_bootstrap, paired_difference
from fawkes_eval.registry import CLOAKS, COUNTERMEASURES, EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor, Tracker
from recognizers.trackers import CalibratedTracker, FineTuneConfig, FineTuneTracker, NearestNeighbor
from scenarios.photos import CloakedPhoto
from scenarios.protection import ProtectionBench, ProtectionConfig
from scenarios.robust import robust_augmentations

load_rooms()
PROTECTED = ["Hugo_Chavez", "Kofi_Annan", "Laura_Bush", "Tiger_Woods", "Winona_Ryder"]


@pytest.fixture(scope="module")
def scenario(demo_dataset: Dataset, aligner: FaceAligner) -> ProtectionBench:
    return ProtectionBench(
        [load_photo(r.path) for r in demo_dataset.records], [str(r.path) for r in demo_dataset.records],
        [r.identity for r in demo_dataset.records], aligner, ProtectionConfig(n_boot=500),
    )


@pytest.fixture(scope="module")
def split(demo_dataset: Dataset) -> Split:
    return split_dataset(demo_dataset, seed=0)


@pytest.fixture(scope="module")
def victim() -> FeatureExtractor:
    return EXTRACTORS.create("dlib-resnet")


@pytest.fixture(scope="module")
def uncloaked(scenario: ProtectionBench, split: Split) -> dict[int, CloakedPhoto]:
    """'Cloaked' photos that are the clean photos themselves: the protocol without a cloak."""
    empty = np.zeros((1, 1, 3), np.uint8)
    return {i: CloakedPhoto(scenario.sources[i], scenario.photos[i], empty, empty.astype(np.float32), 0.0, {})
            for u in PROTECTED for i in split.train[u]}


@pytest.fixture(scope="module")
def noise_cloaked(scenario: ProtectionBench, split: Split) -> dict[int, CloakedPhoto]:
    return scenario.cloak_users(CLOAKS.create("noise:mid", template="dlib-150"), split, PROTECTED, seed=0)[0]


def _factory(name: str) -> Callable[[], Tracker]:
    return lambda: TRACKERS.create(name)


def _clean_error(scenario: ProtectionBench, victim: FeatureExtractor, split: Split, tracker: str) -> float:
    """The tracker's error on the protected users' clean test photos when it trains on clean photos only."""
    clean = scenario.embedder(victim).embed(scenario.photos, scenario.sources)
    names = sorted(split.train)
    labels = np.array([names.index(x) for x in scenario.identities])
    train = np.array(sorted(i for v in split.train.values() for i in v))
    t = TRACKERS.create(tracker)
    if isinstance(t, CalibratedTracker):
        t.calibrate(clean[train], labels[train])
    t.fit(clean[train], labels[train])
    return float(np.mean([np.mean(t.rank(clean[split.test[u]], 1)[:, 0] != labels[split.test[u]]) for u in PROTECTED]))


@pytest.mark.parametrize("tracker", ["1nn", "logreg", "mlp", "enroll-search:1e-2"])
def test_without_a_cloak_psr_is_the_clean_error_rate(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, uncloaked: dict[int, CloakedPhoto],
    tracker: str,
) -> None:
    outcome = scenario.evaluate(uncloaked, victim, _factory(tracker), split, PROTECTED, seed=0)
    assert outcome.psr.value == pytest.approx(_clean_error(scenario, victim, split, tracker))
    assert outcome.others_acc >= 0.8
    assert set(outcome.misses) == set(PROTECTED)
    assert [len(outcome.misses[u]) for u in PROTECTED] == [len(split.test[u]) for u in PROTECTED]


def test_noise_control_stays_near_the_clean_error_rate(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, noise_cloaked: dict[int, CloakedPhoto],
) -> None:
    outcome = scenario.evaluate(noise_cloaked, victim, _factory("1nn"), split, PROTECTED, seed=0)
    assert abs(outcome.psr.value - _clean_error(scenario, victim, split, "1nn")) <= 0.05
    assert outcome.others_acc >= 0.9


@pytest.mark.parametrize("side", ["uploads", "queries", "both"])
def test_jpeg_at_quality_100_changes_nothing_measurable(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, noise_cloaked: dict[int, CloakedPhoto],
    side: str,
) -> None:
    plain = scenario.evaluate(noise_cloaked, victim, _factory("logreg"), split, PROTECTED, seed=0)
    jpeg = scenario.evaluate(noise_cloaked, victim, _factory("logreg"), split, PROTECTED, seed=0,
                             countermeasure=COUNTERMEASURES.create("jpeg", quality=100), side=side)
    assert jpeg.psr.value == plain.psr.value
    assert abs(jpeg.others_acc - plain.others_acc) <= 0.02


def test_countermeasure_on_queries_reaches_the_queries(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, uncloaked: dict[int, CloakedPhoto],
) -> None:
    """A destructive transform on the queries only must show in the tracker's accuracy on everyone."""
    heavy = COUNTERMEASURES.create("rescale", factor=0.05)
    plain = scenario.evaluate(uncloaked, victim, _factory("1nn"), split, PROTECTED, seed=0)
    hurt = scenario.evaluate(uncloaked, victim, _factory("1nn"), split, PROTECTED, seed=0,
                             countermeasure=heavy, side="queries")
    assert hurt.others_acc < plain.others_acc - 0.2
    with pytest.raises(ValueError, match="side must be one of"):
        scenario.evaluate(uncloaked, victim, _factory("1nn"), split, PROTECTED, seed=0, countermeasure=heavy,
                          side="upload")


class _Recording(NearestNeighbor):
    """1-NN that remembers what it was trained on."""

    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        _Recording.seen.append((embeddings.copy(), labels.copy()))
        super().fit(embeddings, labels)


def test_robust_training_trains_on_every_augmented_view(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, noise_cloaked: dict[int, CloakedPhoto],
) -> None:
    _Recording.seen.clear()
    augmentations = robust_augmentations(["blur:1"])
    outcome = scenario.evaluate(noise_cloaked, victim, _Recording, split, PROTECTED[:1], seed=0,
                                augmentations=augmentations)
    (x, labels), = _Recording.seen
    n_train = outcome.n_train
    assert len(x) == 2 * n_train
    np.testing.assert_array_equal(labels[:n_train], labels[n_train:])
    assert not np.allclose(x[:n_train], x[n_train:])  # the blurred view is embedded anew
    assert outcome.others_acc >= 0.9


def test_leak_ratio_keeps_that_share_of_uploads_clean(
    scenario: ProtectionBench, split: Split, victim: FeatureExtractor, noise_cloaked: dict[int, CloakedPhoto],
    demo_dataset: Dataset, aligner: FaceAligner,
) -> None:
    leaky = ProtectionBench(scenario.photos, scenario.sources, scenario.identities, aligner,
                               ProtectionConfig(leak_ratio=0.5, n_boot=500))
    _Recording.seen.clear()
    user = PROTECTED[0]
    leaky.evaluate(noise_cloaked, victim, _Recording, split, [user], seed=0)
    (x, _), = _Recording.seen
    clean = leaky.embedder(victim).embed(scenario.photos, scenario.sources)
    train = sorted(i for v in split.train.values() for i in v)
    rows = [train.index(i) for i in split.train[user]]
    kept_clean = sum(bool(np.allclose(x[r], clean[i])) for r, i in zip(rows, split.train[user], strict=True))
    assert kept_clean == round(0.5 * len(split.train[user]))


@pytest.mark.slow
def test_finetune_tracker_runs_the_protocol_on_aligned_faces(
    scenario: ProtectionBench, split: Split, uncloaked: dict[int, CloakedPhoto],
) -> None:
    victim = EXTRACTORS.create("mobileface")
    outcome = scenario.evaluate(uncloaked, victim, lambda: FineTuneTracker(FineTuneConfig(epochs=1, batch_size=24)),
                                split, PROTECTED[:1], seed=0)
    assert outcome.others_acc >= 0.8
    assert outcome.psr.value <= 0.34  # 3 clean queries: at most one missed


def test_paired_difference_of_identical_versions_is_zero_and_detects_a_drop() -> None:
    rng = np.random.default_rng(0)
    baseline = [(rng.random(12) < 0.9).astype(float) for _ in range(5)]
    same = paired_difference(baseline, baseline, seed=0)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    dropped = [np.where(rng.random(len(b)) < 0.5, 0.0, b) for b in baseline]
    diff = paired_difference(dropped, baseline, seed=0)
    assert diff.low <= diff.value <= diff.high < 0.0
    expected = np.mean([d.mean() for d in dropped]) - np.mean([b.mean() for b in baseline])
    assert diff.value == pytest.approx(expected)
    assert paired_difference(dropped, baseline, seed=0) == diff  # seeded


def test_paired_difference_is_narrower_than_unpaired_and_narrows_with_images() -> None:
    def versions(n_images: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng(0)
        baseline = [rng.random(n_images) < p for p in (0.2, 0.5, 0.9, 0.6)]  # users differ a lot
        return [(b | (rng.random(n_images) < 0.3)).astype(float) for b in baseline], [b.astype(float) for b in baseline]

    small, large = paired_difference(*versions(8), seed=2), paired_difference(*versions(80), seed=2)
    assert small.low <= small.value <= small.high and large.low <= large.value <= large.high
    assert large.high - large.low < small.high - small.low
    # pairing cancels the spread between users that an unpaired interval carries
    unpaired = hierarchical_bootstrap(versions(80)[0], seed=2)
    assert large.high - large.low < unpaired.high - unpaired.low


def test_paired_difference_refuses_unpaired_cells() -> None:
    with pytest.raises(ValueError, match="same items"):
        paired_difference([np.ones(3)], [np.ones(4)], seed=0)
    with pytest.raises(ValueError, match="same groups"):
        paired_difference([np.ones(3)], [np.ones(3), np.ones(3)], seed=0)


def test_sweep_builds_a_campaign_over_every_strength_of_the_families() -> None:
    from fawkes_eval.cli import build_parser
    from fawkes_eval.commands.sweep import sweep_campaign

    args = build_parser().parse_args(["sweep", "--data", "d", "--cloak", "fawkes-v1.0:mid", "--families", "jpeg,blur",
                                      "--side", "queries"])
    campaign = sweep_campaign(args)
    assert campaign.grid.countermeasures == ("none", "jpeg:95", "jpeg:75", "jpeg:50", "jpeg:30", "jpeg:10",
                                             "blur:0.5", "blur:1", "blur:2")
    assert campaign.protocol.countermeasure_side == "queries"
    assert campaign.grid.cloaks == ("fawkes-v1.0:mid",) and campaign.protected.count == 3


@pytest.mark.slow
def test_sweep_command_prints_psr_per_strength(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fawkes_eval.cli import main
    from fawkes_eval.runner import DEMO_DATA

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / "cache"))
    code = main(["sweep", "--data", str(DEMO_DATA), "--cloak", "noise:low", "--families", "median",
                 "--protected", "Laura_Bush", "--out", str(tmp_path / "out")])
    assert code == 0
    table = capsys.readouterr().out
    lines = [ln for ln in table.splitlines() if ln.startswith("| noise:low")]
    assert [ln.split("|")[5].strip() for ln in lines] == ["none", "median:3", "median:5"]
    assert all(ln.split("|")[6].strip() == ("-" if "none" in ln else "uploads") for ln in lines)
    assert "Measured on" in table and "Laura_Bush" in table
