"""The verification protocol on LFW pairs.txt with a real model, and its parsing and rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.align import FaceAligner
from fawkes_eval.data import DatasetError
from fawkes_eval.registry import CLOAKS, EXTRACTORS
from fawkes_eval.rooms import load_rooms
from scenarios.verification import (
    VerificationConfig,
    dodging_rate,
    equal_error_rate,
    read_pairs,
    select_pairs,
    verify_clean,
)

pytestmark = pytest.mark.heavy

load_rooms()


def test_read_pairs_parses_the_lfw_file(lfw_root: Path) -> None:
    pairs = read_pairs(lfw_root / "pairs.txt")
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    assert {p.fold for p in pairs} == set(range(10))
    assert pairs[0].same and pairs[0].first.startswith(pairs[0].first.split("/")[0] + "/")
    assert all((lfw_root / "images" / p.first).is_file() for p in pairs[:50])
    assert not pairs[300].same and pairs[300].fold == 0 and pairs[600].fold == 1


def test_bad_pairs_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nAlice 1 2\nBob 1\n")
    with pytest.raises(DatasetError, match=r"pairs.txt:3: expected 'name1 i name2 j'"):
        read_pairs(bad)
    with pytest.raises(DatasetError, match="cannot read"):
        read_pairs(tmp_path / "missing.txt")


def test_equal_error_rate_of_known_scores() -> None:
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert equal_error_rate(same, np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])) == 0.0
    eer = equal_error_rate(same, np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1]))
    assert eer == pytest.approx(0.25)


@pytest.mark.slow
def test_dlib_resnet_verification_is_plausible_and_a_cloak_dodges(lfw_root: Path, aligner: FaceAligner) -> None:
    """Four folds, the first 60 same and 60 different pairs of each (about 900 photos)."""
    pairs = read_pairs(lfw_root / "pairs.txt")
    config = VerificationConfig(fars=(1e-2,), folds=(0, 1, 2, 3), pairs_per_fold=60, n_boot=500)
    extractor = EXTRACTORS.create("dlib-resnet")
    outcome = verify_clean(extractor, aligner, lfw_root / "images", pairs, config, seed=0)
    assert outcome.n_pairs + outcome.n_skipped_pairs == 480
    assert outcome.n_skipped_pairs <= 24
    tar = outcome.tar[1e-2]
    assert tar.value >= 0.9, f"dlib-resnet TAR@FAR=1e-2 {tar}"
    assert tar.low <= tar.value <= tar.high and tar.n_groups == 4
    assert outcome.held_out_far[1e-2] <= 0.05
    assert outcome.auc >= 0.97 and outcome.eer <= 0.08

    # dodging: a white-box cloak on enrolments of 8 same-person pairs, probed with clean photos
    surrogate = EXTRACTORS.create("dlib-resnet-torch")
    same_pairs = [p for p in select_pairs(pairs, config) if p.same][:8]
    dodge = dodging_rate(extractor, CLOAKS.create("fawkes-v1.0:mid", surrogates=[surrogate]), aligner,
                         lfw_root / "images", same_pairs, outcome.thresholds, seed=0, n_boot=500)
    assert dodge.n_pairs >= 7
    assert dodge.dodging[1e-2].value >= dodge.clean_reject[1e-2].value + 0.3
