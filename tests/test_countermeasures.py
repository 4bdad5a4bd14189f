"""Countermeasures on real LFW photos: every registered strength, determinism, strength order, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fawkes_eval.align import load_photo
from fawkes_eval.data import Dataset
from fawkes_eval.registry import COUNTERMEASURES
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import Countermeasure
from scenarios.countermeasures import STRENGTHS

load_rooms()


@pytest.fixture(scope="module")
def photos(demo_dataset: Dataset) -> list[np.ndarray]:
    out = [load_photo(r.path) for r in demo_dataset.records[:3]]
    for p in out:
        p.setflags(write=False)  # a countermeasure must not change its input
    return out


def _mean_change(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("spec", COUNTERMEASURES.names())
def test_every_registered_strength_keeps_shape_and_is_deterministic(spec: str, photos: list[np.ndarray]) -> None:
    cm = COUNTERMEASURES.create(spec)
    assert isinstance(cm, Countermeasure)
    assert cm.name == spec
    out = cm.apply(photos, seed=3)
    assert [o.shape for o in out] == [p.shape for p in photos]
    assert all(o.dtype == np.uint8 for o in out)
    assert 0.0 < _mean_change(photos, out) < 40.0  # it does something, and leaves a face
    again = cm.apply(photos, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))


def test_design_strengths_are_registered() -> None:
    names = set(COUNTERMEASURES.names())
    expected = {"jpeg:95", "jpeg:75", "jpeg:50", "jpeg:30", "jpeg:10", "blur:0.5", "blur:1", "blur:2",
                "rescale:0.75", "rescale:0.5", "rescale:0.25", "median:3", "median:5"}
    assert expected <= names
    assert {"gaussian-noise", "bit-depth"} <= {n.split(":")[0] for n in names}


@pytest.mark.parametrize("family", sorted(STRENGTHS))
def test_strongest_changes_more_than_weakest(family: str, photos: list[np.ndarray]) -> None:
    modes = list(STRENGTHS[family])
    weakest, strongest = (COUNTERMEASURES.create(f"{family}:{m}") for m in (modes[0], modes[-1]))
    assert _mean_change(photos, strongest.apply(photos, 0)) > _mean_change(photos, weakest.apply(photos, 0))


def test_gaussian_noise_depends_on_the_seed(photos: list[np.ndarray]) -> None:
    cm = COUNTERMEASURES.create("gaussian-noise:4")
    a, b = cm.apply(photos, seed=0), cm.apply(photos, seed=1)
    assert not np.array_equal(a[0], b[0])
    assert abs(np.std(a[0].astype(float) - photos[0]) - 4.0) < 0.5  # sigma in 0..255 units (a little clipping)


def test_jpeg_at_quality_100_is_nearly_lossless(photos: list[np.ndarray]) -> None:
    out = COUNTERMEASURES.create("jpeg", quality=100).apply(photos, seed=0)
    assert COUNTERMEASURES.create("jpeg", quality=100).name == "jpeg:100"
    assert _mean_change(photos, out) < 1.0


@pytest.mark.parametrize(("family", "kwargs"), [
    ("jpeg", {"quality": 0}), ("jpeg", {"quality": 50.5}), ("blur", {"sigma": 0}), ("rescale", {"factor": 1.5}),
    ("median", {"window": 1}), ("gaussian-noise", {"sigma": -1}), ("bit-depth", {"bits": 8}),
])
def test_bad_strength_is_refused_with_its_name(family: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=family):
        COUNTERMEASURES.create(family, **kwargs)


def test_bad_photo_is_refused() -> None:
    with pytest.raises(ValueError, match=r"blur:1: photo 1 must be uint8"):
        COUNTERMEASURES.create("blur:1").apply([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], 0)


def test_registering_imports_no_art() -> None:
    code = "import fawkes_eval.rooms as r, sys; r.load_rooms(); print('art' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
