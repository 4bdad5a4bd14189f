"""``fawkes-eval zoo``: what the model zoo holds, and how well each model identifies clean faces."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fawkes_eval.align import FaceAligner, NoFaceError, default_cache_dir, load_photo
from fawkes_eval.data import load_dataset
from fawkes_eval.registry import DETECTORS, EVALUATIONS, EXTRACTORS, TRACKERS
from fawkes_eval.rooms import load_rooms


def print_zoo() -> None:
    load_rooms()
    print(f"{'name':<18} {'input':>5} {'template':<12} {'dim':>5} {'grad':<5} {'backend':<10} license / weights sha256")
    from recognizers.weights import WeightsError

    for name in EXTRACTORS.names():
        try:
            info = EXTRACTORS.create(name).info
        except WeightsError as e:  # adapters for user-supplied weights (DeepFace, InsightFace packs)
            print(f"{name:<18} not available here: {e}")
            continue
        hashes = ", ".join(f"{f}={h[:12]}" for f, h in sorted(info.weight_sha256.items()))
        print(f"{name:<18} {info.input_size:>5} {info.template:<12} {info.embedding_dim:>5} "
              f"{'yes' if info.differentiable else 'no':<5} {info.backend:<10} {info.license}")
        print(f"{'':<18} {EXTRACTORS.summary(name)}")
        print(f"{'':<18} {hashes}")
    print("\ndetectors (--detector): " + "; ".join(f"{n}: {DETECTORS.summary(n)}" for n in DETECTORS.names()))


def check(data: Path, subset: Path | None, models: tuple[str, ...] | None, folds: int, seed: int,
          detector: str | None = None, aligned: str | None = None) -> int:
    """Embed the dataset with each model and print k-fold 1-NN and logistic-regression accuracy.

    ``detector``: a registered face detector (default dlib HOG); ``aligned``: the photos are crops on this template
    (nothing detected; other templates derived from it)."""
    load_rooms()
    dataset = load_dataset(data, subset)
    from recognizers.weights import WeightsError

    try:
        aligner = FaceAligner(cache_dir=default_cache_dir(), detector=detector, aligned=aligned)
    except WeightsError as e:  # the detector's package or weights are missing: the message says what to install
        print(f"fawkes-eval zoo check: error: {e}", file=sys.stderr)
        return 2
    names = list(models) if models else EXTRACTORS.names()
    found_by = f"pre-aligned {aligned} crops" if aligned else f"faces found by {aligner.detector.name}"
    print(f"dataset {dataset.name}: {len(dataset.identities)} identities, {len(dataset.records)} images, "
          f"manifest sha256 {dataset.manifest_hash()[:16]}; {folds}-fold, seed {seed}; {found_by}")
    photos = []
    for record in dataset.records:
        try:
            photos.append((record, load_photo(record.path)))
        except OSError as e:
            print(f"skipped {record.path}: {e}")
    print("| model | images | 1-NN acc | logistic acc | s/face |\n|---|---|---|---|---|")
    kfold = EVALUATIONS.factory("identification")
    for name in names:
        extractor = EXTRACTORS.create(name)
        faces, identities = [], []
        for record, photo in photos:
            try:
                faces.append(aligner.align(photo, extractor.info.template, str(record.path)).crop)
                identities.append(record.identity)
            except NoFaceError as e:
                print(f"skipped {e}")
        import numpy as np

        start = time.perf_counter()
        embeddings = np.concatenate([extractor.embed(np.stack(faces[i:i + 64])) for i in range(0, len(faces), 64)])
        per_face = (time.perf_counter() - start) / len(faces)
        nn = kfold(embeddings, identities, lambda: TRACKERS.create("1nn"), folds, seed)
        lr = kfold(embeddings, identities, lambda: TRACKERS.create("logreg"), folds, seed)
        print(f"| {name} | {len(faces)} | {nn.accuracy:.3f} | {lr.accuracy:.3f} | {per_face:.3f} |", flush=True)
    padded = aligner.provenance().get("padded")
    if padded:
        print("derived from the pre-aligned crops; largest share padded black per template: "
              + ", ".join(f"{t} {v:.3f}" for t, v in padded.items()))  # type: ignore[attr-defined]
    return 0
