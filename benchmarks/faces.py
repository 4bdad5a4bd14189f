"""The fixed set of aligned faces the cloak benchmarks run on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fawkes_eval.align import FaceAligner, NoFaceError, default_cache_dir, load_photo
from fawkes_eval.data import FaceRecord, load_dataset

LFW_SUBSET = "ge10_cap50.txt"


@dataclass(frozen=True)
class BenchmarkFaces:
    faces: np.ndarray  # uint8 (N, S, S, 3) at the template
    source: str  # which photos, in words, for the report
    distinct: int  # how many different photos; the rest repeat them to fill the batch


def round_robin(records: tuple[FaceRecord, ...]) -> list[FaceRecord]:
    """Each identity's first photo, then each one's second, ...: many people early in the order."""
    by_identity: dict[str, list[FaceRecord]] = defaultdict(list)
    for record in records:
        by_identity[record.identity].append(record)
    longest = max(len(v) for v in by_identity.values())
    return [v[i] for i in range(longest) for v in by_identity.values() if i < len(v)]


def benchmark_faces(count: int, template: str, lfw: Path | None, demo_data: Path) -> BenchmarkFaces:
    """``count`` faces aligned at ``template``: LFW ge10_cap50 in round-robin order (the bundled sample when LFW is
    absent), repeated to fill ``count`` when there are fewer photos than that."""
    if lfw is not None:
        dataset = load_dataset(lfw / "images", lfw / "subsets" / LFW_SUBSET)
        where = f"LFW {LFW_SUBSET}"
    else:
        dataset = load_dataset(demo_data)
        where = "bundled LFW sample"
    aligner = FaceAligner(cache_dir=default_cache_dir())
    crops: list[np.ndarray] = []
    for record in round_robin(dataset.records):
        if len(crops) == count:
            break
        try:
            crops.append(aligner.align(load_photo(record.path), template, str(record.path)).crop)
        except NoFaceError:
            continue
    if not crops:
        raise ValueError(f"{where}: no face could be aligned at {template}")
    return _filled(np.stack(crops), count, f"{where}, first {len(crops)} faces in identity round-robin order at {template}")


def faces_from_file(path: Path, count: int, size: int) -> BenchmarkFaces:
    """The first ``count`` faces of a uint8 (N, size, size, 3) ``.npy`` file, repeated if it holds fewer."""
    try:
        faces = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read aligned faces ({e})") from None
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or len(faces) == 0:
        raise ValueError(f"{path}: expected uint8 (N, {size}, {size}, 3) faces, got {faces.dtype} {faces.shape}")
    return _filled(faces[:count], count, f"{path.name}: {min(count, len(faces))} aligned faces")


def _filled(faces: np.ndarray, count: int, source: str) -> BenchmarkFaces:
    distinct = len(faces)
    return BenchmarkFaces(np.stack([faces[i % distinct] for i in range(count)]), source, distinct)
