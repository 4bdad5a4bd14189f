"""Identity-folder face datasets: loading, manifests with sha256 per file, seeded train/test splits."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DatasetError(ValueError):
    """A dataset or subset file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class FaceRecord:
    path: Path
    identity: str
    sha256: str
    size: int


@dataclass(frozen=True)
class FileError:
    """A file that was left out, and why: reported in results, never silently dropped.

    ``kind``: ``refused`` (by the dataset loader: outside the root, missing, misplaced), ``unreadable`` (not a
    usable image) or ``no-face`` (no face detected: a normal outcome for some photos, not a failure).
    """

    path: str
    reason: str
    kind: str = "refused"

    def to_dict(self, dataset: str) -> dict[str, str]:
        return {"dataset": dataset, "file": self.path, "reason": self.reason, "kind": self.kind}

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Dataset:
    root: Path
    records: tuple[FaceRecord, ...]
    name: str
    errors: tuple[FileError, ...] = ()

    @property
    def identities(self) -> list[str]:
        return sorted({r.identity for r in self.records})

    def by_identity(self) -> dict[str, list[FaceRecord]]:
        out: dict[str, list[FaceRecord]] = {}
        for r in self.records:
            out.setdefault(r.identity, []).append(r)
        return out

    def manifest(self) -> list[dict[str, object]]:
        return [
            {"path": r.path.relative_to(self.root).as_posix(), "identity": r.identity, "sha256": r.sha256, "size": r.size}
            for r in self.records
        ]

    def manifest_hash(self) -> str:
        """sha256 of the manifest: identifies exactly which bytes a result was measured on."""
        blob = json.dumps(self.manifest(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def write_manifest(self, path: Path) -> None:
        path.write_text(json.dumps({"name": self.name, "manifest_sha256": self.manifest_hash(),
                                    "files": self.manifest()}, indent=1))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_dataset(root: Path | str, subset: Path | str | None = None, name: str | None = None) -> Dataset:
    """Load ``ROOT/<identity>/<image>``; ``subset`` lists relative paths, one per line, to keep.

    Paths that leave ``root`` (``..``, absolute, symlinks pointing outside) and listed files that are missing
    are refused one by one into ``Dataset.errors``; only a dataset with no usable file at all is an error.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    if subset is not None:
        subset = Path(subset)
        try:
            lines = subset.read_text().splitlines()
        except OSError as e:
            raise DatasetError(f"{subset}: cannot read subset file ({e.strerror})") from None
        rel_paths = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    else:
        rel_paths = sorted(
            p.relative_to(root).as_posix()
            for p in root.glob("*/*")
            if p.suffix.lower() in IMAGE_SUFFIXES
        )
    records = []
    errors = []
    for rel in rel_paths:
        listed = root / rel
        path = listed.resolve()
        if not path.is_relative_to(root):
            errors.append(FileError(str(listed), f"refused: resolves to {path}, outside the dataset root {root}"))
        elif not path.is_file():
            errors.append(FileError(str(listed), f"listed in {subset} but missing"))
        elif len(Path(rel).parts) < 2:
            errors.append(FileError(str(listed), "not inside an identity folder (expected ROOT/<identity>/<image>)"))
        else:
            # keep the path as listed (not resolved) so reports name the file the user knows
            records.append(FaceRecord(listed, Path(rel).parts[0], sha256_file(path), path.stat().st_size))
    if not records:
        detail = f" ({len(errors)} refused, first: {errors[0]})" if errors else ""
        raise DatasetError(f"{subset or root}: no usable images found{detail}")
    return Dataset(root, tuple(records), name or (Path(subset).stem if subset else root.name), tuple(errors))


@dataclass(frozen=True)
class Split:
    """Indices into ``Dataset.records`` per identity."""

    train: dict[str, list[int]]
    test: dict[str, list[int]]


def split_dataset(dataset: Dataset, seed: int, train_fraction: float = 0.7) -> Split:
    """Per identity, shuffle with ``seed`` and keep ``train_fraction`` for training (at least one each side).

    An identity with a single image is kept for training only (an enrolled distractor, as in all of LFW, where
    most identities have one photo); it has no test photo, so it can be neither protected nor queried.
    """
    rng = np.random.default_rng(seed)
    train: dict[str, list[int]] = {}
    test: dict[str, list[int]] = {}
    index: dict[str, list[int]] = {}
    for i, r in enumerate(dataset.records):
        index.setdefault(r.identity, []).append(i)
    for identity in sorted(index):
        idx = list(index[identity])
        if len(idx) == 1:
            train[identity], test[identity] = idx, []
            continue
        order = rng.permutation(len(idx))
        n_train = min(max(1, round(train_fraction * len(idx))), len(idx) - 1)
        train[identity] = sorted(idx[j] for j in order[:n_train])
        test[identity] = sorted(idx[j] for j in order[n_train:])
    return Split(train, test)
