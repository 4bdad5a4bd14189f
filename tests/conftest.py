"""Shared fixtures: real photos (bundled LFW sample; full LFW when present), a real aligner, aligned faces."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.data import Dataset, load_dataset

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "fawkes_eval" / "demo_data" / "lfw_sample"


def find_lfw() -> Path | None:
    """Full LFW from $FAWKES_EVAL_LFW or ../shared/data/lfw beside the checkout."""
    for candidate in (os.environ.get("FAWKES_EVAL_LFW"), REPO.parent / "shared" / "data" / "lfw"):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    root = find_lfw()
    if root is None:
        pytest.skip("full LFW not found: set FAWKES_EVAL_LFW or place it at ../shared/data/lfw")
    return root


@pytest.fixture(scope="session")
def lfw_fixture(lfw_root: Path) -> Dataset:
    """LFW fixture_8x6: 8 identities x 6 images."""
    return load_dataset(lfw_root / "images", lfw_root / "subsets" / "fixture_8x6.txt")


@pytest.fixture(scope="session")
def demo_dataset() -> Dataset:
    """The bundled 10 x 10 LFW sample: always present, even without ../shared."""
    return load_dataset(DEMO_DATA)


@pytest.fixture(scope="session")
def aligner(tmp_path_factory: pytest.TempPathFactory) -> FaceAligner:
    return FaceAligner(cache_dir=tmp_path_factory.mktemp("align-cache"))


@pytest.fixture(scope="session")
def aligned(aligner: FaceAligner) -> Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]:
    """``aligned(dataset, template)`` -> (uint8 faces (N, S, S, 3), identity labels (N,)); memoised."""
    memo: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def get(dataset: Dataset, template: str) -> tuple[np.ndarray, np.ndarray]:
        key = (dataset.manifest_hash(), template)
        if key not in memo:
            faces = [aligner.align(load_photo(r.path), template, str(r.path)).crop for r in dataset.records]
            labels = np.array([r.identity for r in dataset.records])
            faces_arr = np.stack(faces)
            faces_arr.setflags(write=False)  # shared across tests: nobody may mutate it
            memo[key] = (faces_arr, labels)
        return memo[key]

    return get
