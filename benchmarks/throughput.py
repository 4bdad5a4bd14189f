"""Whole-campaign throughput: photos cloaked + embedded per second of a real campaign, this tree and another.

A campaign here is ``fawkes_eval.runner.run_campaign`` in a fresh process (``python -m benchmarks.evaluation``) with
its own empty cloak and embedding caches, results folder and MLflow store; alignments are shared (done first, into
the persistent cache, and not timed), so the figure is the audit's own work: cloak the protected users' training
photos with ``fawkes-v1.0:low`` through ``dlib-resnet-torch``, embed every photo and every cloaked photo with the
victim, run the protocol, write the reports. Throughput = (photos cloaked + photos embedded) / campaign seconds,
where the photos embedded are the dataset's photos and the cloaked ones, and the photos cloaked are the protected
users' training photos of the campaign's split.

With ``before`` (another checkout, e.g. main's), each campaign runs once per tree, alternating, the other tree
first, so both see the same machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks import REPO, git_revision


@dataclass(frozen=True)
class ThroughputCampaign:
    name: str  # demo, lfw-2000
    root: Path  # identity-folder dataset root
    photos: tuple[str, ...]  # relative paths of the campaign's photos
    protected: int = 2
    cloak: str = "fawkes-v1.0:low"
    surrogate: str = "dlib-resnet-torch"
    victim: str = "dlib-resnet-torch"
    tracker: str = "1nn"
    n_boot: int = 200


@dataclass(frozen=True)
class ThroughputRun:
    campaign: str
    tree: str  # "this" or "before"
    revision: str  # where the code came from
    photos: int
    photos_cloaked: int
    photos_embedded: int
    seconds: float  # run_campaign's wall time in the child
    process_seconds: float
    photos_per_s: float  # (cloaked + embedded) / seconds
    sec_per_cloaked_photo: float  # the cell's own figure (cloaking time / photos cloaked)


def _write(path: Path, c: ThroughputCampaign, subset: Path) -> None:
    campaign = {
        "study": "fawkes-eval-benchmarks", "campaign": path.stem,
        "roots": {"data": str(c.root.resolve().parent)},
        "datasets": [{"name": c.name, "root": f"data:{c.root.resolve().name}", "subset": subset.name}],
        "protected": {"count": c.protected},
        "grid": {"cloaks": [c.cloak], "surrogates": [c.surrogate], "victims": [c.victim], "trackers": [c.tracker],
                 "seeds": [0]},
        "protocol": {"n_boot": c.n_boot},
    }
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))


def _cloaked_count(c: ThroughputCampaign, subset: Path, row: dict[str, object]) -> int:
    """The protected users' training photos of the cell's split (what the runner cloaks)."""
    from fawkes_eval.data import load_dataset, split_dataset

    provenance = row["provenance"]
    assert isinstance(provenance, dict)
    protected = set(provenance["protected_users"])
    split = split_dataset(load_dataset(c.root, subset), 0)
    return sum(len(split.train[u]) for u in protected)


def _one(c: ThroughputCampaign, tree: Path, label: str, workdir: Path, align: Path) -> ThroughputRun:
    from benchmarks.evaluation import empty_mlflow_store

    run_dir = workdir / f"{c.name}-{label}"
    run_dir.mkdir(parents=True)
    empty = workdir / "mlflow-empty.db"
    if not empty.exists():
        empty_mlflow_store(empty)  # tables made once, up front: not the campaign's work
    shutil.copyfile(empty, run_dir / "mlflow.db")
    subset = run_dir / "photos.txt"
    subset.write_text("\n".join(c.photos) + "\n")
    campaign = run_dir / f"throughput-{c.name}.yaml"
    _write(campaign, c, subset)
    cache = run_dir / "cache"
    cache.mkdir()
    (cache / "align").symlink_to(align.resolve(), target_is_directory=True)
    env = {**os.environ, "FAWKES_EVAL_CACHE": str(cache), "MLFLOW_TRACKING_URI": f"sqlite:///{run_dir / 'mlflow.db'}",
           "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.evaluation", str(campaign), str(run_dir / "out"), label],
                          cwd=tree, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{campaign} ({label}, {tree}) failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    fields = json.loads(proc.stdout.strip().splitlines()[-1])
    cells = sorted((run_dir / "out").rglob("cells/*.json"))
    if len(cells) != 1:
        raise RuntimeError(f"{run_dir / 'out'}: expected one cell, found {len(cells)}")
    row = json.loads(cells[0].read_text())
    cloaked = _cloaked_count(c, subset, row)
    embedded = int(row["provenance"]["n_images"]) + cloaked
    seconds = float(fields["seconds"])
    return ThroughputRun(c.name, label, git_revision(tree), len(c.photos), cloaked, embedded, seconds, elapsed,
                         (cloaked + embedded) / seconds, float(row["metrics"]["sec_per_image"]))


def prepare_alignments(campaigns: list[ThroughputCampaign], align_cache: Path) -> float:
    """Align every campaign photo at the surrogate's and the victim's templates into the persistent cache."""
    from fawkes_eval.align import FaceAligner, NoFaceError, load_photo
    from fawkes_eval.registry import EXTRACTORS
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    start = time.perf_counter()
    aligner = FaceAligner(cache_dir=align_cache)
    for c in campaigns:
        templates = {EXTRACTORS.create(name).info.template for name in (c.surrogate, c.victim)}
        for rel in c.photos:
            photo = load_photo(c.root / rel)
            for template in sorted(templates):
                try:
                    aligner.align(photo, template, str(c.root / rel))
                except NoFaceError:
                    continue
    return time.perf_counter() - start


def run_throughput(campaigns: list[ThroughputCampaign], workdir: Path, align_cache: Path,
                   before: Path | None = None) -> dict[str, object]:
    """Each campaign in this tree (and in ``before`` first, when given); the ratio of throughputs per campaign."""
    aligned = prepare_alignments(campaigns, align_cache)
    (align_cache / "align").mkdir(parents=True, exist_ok=True)
    runs: list[ThroughputRun] = []
    ratios: dict[str, float] = {}
    for c in campaigns:
        if before is not None:
            runs.append(_one(c, before, "before", workdir, align_cache / "align"))
        runs.append(_one(c, REPO, "this", workdir, align_cache / "align"))
        if before is not None:
            ratios[c.name] = runs[-1].photos_per_s / runs[-2].photos_per_s
    return {"alignment_seconds": aligned, "runs": runs, "speedup_vs_before": ratios}
