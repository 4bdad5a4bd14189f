from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.data import Dataset, DatasetError, load_dataset, sha256_file, split_dataset


def test_demo_sample_loads_with_manifest(demo_dataset: Dataset) -> None:
    assert len(demo_dataset.identities) == 10
    assert len(demo_dataset.records) == 100
    first = demo_dataset.records[0]
    assert first.sha256 == sha256_file(first.path)
    assert first.size == first.path.stat().st_size
    manifest = demo_dataset.manifest()
    assert manifest[0]["identity"] == first.identity
    assert not Path(str(manifest[0]["path"])).is_absolute()


def test_manifest_hash_changes_with_bytes(tmp_path: Path, demo_dataset: Dataset) -> None:
    for ident in demo_dataset.identities[:2]:
        (tmp_path / ident).mkdir()
        for r in demo_dataset.by_identity()[ident][:2]:
            (tmp_path / ident / r.path.name).write_bytes(r.path.read_bytes())
    before = load_dataset(tmp_path).manifest_hash()
    victim = next(tmp_path.glob("*/*.jpg"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert load_dataset(tmp_path).manifest_hash() != before


def test_subset_file(lfw_root: Path) -> None:
    ds = load_dataset(lfw_root / "images", lfw_root / "subsets" / "fixture_8x6.txt")
    assert len(ds.identities) == 8
    assert all(len(v) == 6 for v in ds.by_identity().values())
    assert ds.name == "fixture_8x6"


def test_subset_may_not_leave_root(tmp_path: Path) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"x")
    subset = tmp_path / "subset.txt"
    subset.write_text("../outside.jpg\n")
    with pytest.raises(DatasetError, match="outside the dataset root"):
        load_dataset(tmp_path / "root", subset)


def test_missing_subset_entry_is_named(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    subset = tmp_path / "s.txt"
    subset.write_text("a/nothere.jpg\n")
    with pytest.raises(DatasetError, match="nothere.jpg"):
        load_dataset(tmp_path, subset)
    (tmp_path / "a" / "there.jpg").write_bytes(b"x")
    subset.write_text("a/nothere.jpg\na/there.jpg\n")
    ds = load_dataset(tmp_path, subset)  # one missing file is reported, the rest loads
    assert [r.path.name for r in ds.records] == ["there.jpg"]
    assert "nothere.jpg" in ds.errors[0].path and "missing" in ds.errors[0].reason


def test_split_is_seeded_and_disjoint(demo_dataset: Dataset) -> None:
    a = split_dataset(demo_dataset, seed=3)
    b = split_dataset(demo_dataset, seed=3)
    c = split_dataset(demo_dataset, seed=4)
    assert a == b
    assert a != c
    for ident in demo_dataset.identities:
        train, test = set(a.train[ident]), set(a.test[ident])
        assert not train & test
        assert len(train) == 7 and len(test) == 3  # 70/30 of 10
        assert {demo_dataset.records[i].identity for i in train | test} == {ident}
    all_idx = sorted(i for v in a.train.values() for i in v) + sorted(i for v in a.test.values() for i in v)
    assert sorted(all_idx) == list(np.arange(len(demo_dataset.records)))


def test_single_photo_identities_are_training_only_distractors(demo_dataset: Dataset) -> None:
    from fawkes_eval.align import PhotoFiles
    from fawkes_eval.campaign import ProtectedSpec
    from fawkes_eval.workspace import PreparedData

    by_identity = demo_dataset.by_identity()
    singles = sorted(by_identity)[:3]  # keep one photo of these, all of the others
    records = tuple(r for r in demo_dataset.records if r.identity not in singles or r == by_identity[r.identity][0])
    dataset = Dataset(demo_dataset.root, records, "with-singles")
    split = split_dataset(dataset, seed=0)
    for name in singles:
        assert len(split.train[name]) == 1 and split.test[name] == []
    assert all(len(split.test[n]) >= 1 for n in by_identity if n not in singles)

    sources = [str(r.path) for r in records]
    prepared = PreparedData(dataset, PhotoFiles(sources), sources, [r.identity for r in records], [])
    drawn = {u for seed in range(20) for u in prepared.protected(ProtectedSpec((), 2), seed)}
    assert drawn and not drawn & set(singles)  # a protected user needs a photo to cloak and one to query
    with pytest.raises(DatasetError, match="at least 2 usable photos"):
        prepared.protected(ProtectedSpec((singles[0],), 0), 0)
    assert np.array_equal(prepared.photos[0], prepared.photos[:1][0])  # decoded from the file on access
