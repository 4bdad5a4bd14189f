"""Evaluation scaling: time and peak memory of a real campaign (align, embed, evaluate, report) as faces grow.

Each run is ``fawkes_eval.runner.run_campaign`` in a fresh Python process (its peak resident memory is that
process's own), with its own on-disk cache folder, results folder and MLflow sqlite store (a copy of one whose
tables were made up front: making them takes seconds, once per store in real use). The campaign: the first N photos
of a list, a noise control protecting 2 identities, one victim (MobileFace: light, so that the harness's own cost
shows), the 1-NN tracker, seed 0.

- cold: empty caches for cloaks and embeddings, a new results folder;
- warm: the same campaign again into a new results folder, with the caches the cold run filled (largest size);
- rerun with one new cloak: the warm run's results folder with one more cloak in the grid: only its cells run.

Face alignment (dlib detection and landmarks) is a one-time cost per photo that every campaign on a dataset shares:
it is done first, into the persistent alignment cache (``FAWKES_EVAL_CACHE``, default ``./.fawkes-eval-cache``),
and reported on its own; each run's cache folder links to it.

Run one campaign and print its figures as JSON: ``python -m benchmarks.evaluation CAMPAIGN.yaml OUT_DIR``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks import REPO


@dataclass(frozen=True)
class EvaluationBenchConfig:
    root: Path  # identity-folder dataset root
    photo_list: Path  # relative photo paths, one per line; each size takes the first N
    sizes: tuple[int, ...] = (500, 2000, 4000)
    victim: str = "mobileface"  # embeds every photo; also the noise control's template source
    trackers: tuple[str, ...] = ("1nn",)
    cloak: str = "noise:low"  # a control: cloaking cost is not what this measures
    new_cloak: str = "noise:mid"  # the cloak added for the rerun
    protected: int = 2
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 10:
            raise ValueError(f"EvaluationBenchConfig.sizes must be >= 10 photos each, got {self.sizes}")
        if self.new_cloak == self.cloak:
            raise ValueError("EvaluationBenchConfig.new_cloak must differ from cloak")


@dataclass(frozen=True)
class CampaignRun:
    label: str  # cold, warm, rerun+<cloak>
    photos: int
    seconds: float  # run_campaign's wall time inside the process
    process_seconds: float  # the whole process, with Python start, imports and model loading
    peak_rss_mib: float  # the process's peak resident memory
    rss_before_mib: float  # peak resident memory after imports, before the campaign
    cells_run: int
    cells_reused: int
    photos_skipped: int


@dataclass(frozen=True)
class AlignmentPrep:
    photos: int
    aligned_now: int  # crops computed in this run (the rest came from the persistent cache)
    no_face: int
    seconds: float
    cache: str


@dataclass(frozen=True)
class EvaluationBenchmark:
    config: EvaluationBenchConfig
    alignment: AlignmentPrep
    runs: list[CampaignRun]


def read_photo_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.is_dir() else 0


def prepare_alignments(config: EvaluationBenchConfig, photos: list[str], align_cache: Path) -> AlignmentPrep:
    """Align every photo for the victim's template into the persistent cache (what every run reuses)."""
    from fawkes_eval.align import FaceAligner, NoFaceError, load_photo
    from fawkes_eval.registry import EXTRACTORS
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    template = EXTRACTORS.create(config.victim).info.template
    before = _count_files(align_cache / "align")
    aligner = FaceAligner(cache_dir=align_cache)
    start = time.perf_counter()
    no_face = 0
    for rel in photos:
        try:
            aligner.align(load_photo(config.root / rel), template, str(config.root / rel))
        except NoFaceError:
            no_face += 1
    return AlignmentPrep(len(photos), _count_files(align_cache / "align") - before, no_face,
                         time.perf_counter() - start, str(align_cache))


def write_campaign(path: Path, config: EvaluationBenchConfig, subset: Path, cloaks: list[str]) -> None:
    """A campaign file beside its ``subset`` list (paths in campaign files are relative to their folder)."""
    campaign = {
        "study": "fawkes-eval-benchmarks",
        "campaign": path.stem,
        "roots": {"data": str(config.root.resolve().parent)},  # campaign files name data through declared roots
        "datasets": [{"name": "faces", "root": f"data:{config.root.resolve().name}", "subset": subset.name}],
        "protected": {"count": config.protected},
        "grid": {"cloaks": cloaks, "surrogates": [config.victim], "victims": [config.victim],
                 "trackers": list(config.trackers), "seeds": [0]},
        "protocol": {"n_boot": config.n_boot},
    }
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))


def run_in_process(campaign_file: Path, out_root: Path, label: str) -> CampaignRun:
    """The child side: run the campaign here and measure this process."""
    from fawkes_eval.campaign import load_campaign
    from fawkes_eval.rooms import load_rooms
    from fawkes_eval.runner import run_campaign

    load_rooms()
    import mlflow  # noqa: F401  (imported up front, as torch is: the campaign's time is its own work)
    import torch  # noqa: F401

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    outcome = run_campaign(load_campaign(campaign_file), out_root, stream=sys.stderr)
    if outcome.failed:
        raise RuntimeError(f"{campaign_file}: cells failed: {outcome.failed}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    photos = len(read_photo_list(Path(load_campaign(campaign_file).datasets[0].subset or "")))
    return CampaignRun(label, photos, outcome.seconds, 0.0, peak, rss_before, outcome.ran, outcome.reused,
                       len(outcome.left_out))


def empty_mlflow_store(path: Path) -> None:
    """An MLflow sqlite store with its tables made: creating them takes seconds, once per store in real use."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()


def _run_child(campaign_file: Path, out_root: Path, cache: Path, mlflow_db: Path, label: str) -> CampaignRun:
    env = {**os.environ, "FAWKES_EVAL_CACHE": str(cache), "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.evaluation", str(campaign_file), str(out_root), label],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{campaign_file} ({label}) failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    fields = json.loads(proc.stdout.strip().splitlines()[-1])
    return CampaignRun(**{**fields, "process_seconds": elapsed})


def run_evaluation_benchmarks(config: EvaluationBenchConfig, workdir: Path, align_cache: Path) -> EvaluationBenchmark:
    """Cold runs at every size, then a warm run and a rerun with one new cloak at the largest."""
    photos = read_photo_list(config.photo_list)
    if max(config.sizes) > len(photos):
        raise ValueError(f"{config.photo_list}: {len(photos)} photos, fewer than the largest size {max(config.sizes)}")
    alignment = prepare_alignments(config, photos[: max(config.sizes)], align_cache)
    (align_cache / "align").mkdir(parents=True, exist_ok=True)
    empty_store = workdir / "mlflow-empty.db"
    empty_mlflow_store(empty_store)
    runs: list[CampaignRun] = []
    for size in sorted(config.sizes):
        subset = workdir / f"photos-{size}.txt"
        subset.write_text("\n".join(photos[:size]) + "\n")
        campaign = workdir / f"scaling-{size}.yaml"
        write_campaign(campaign, config, subset, [config.cloak])
        cache = workdir / f"cache-{size}"
        cache.mkdir()
        (cache / "align").symlink_to((align_cache / "align").resolve(), target_is_directory=True)
        cold_db, warm_db = workdir / f"mlflow-{size}-cold.db", workdir / f"mlflow-{size}-warm.db"
        shutil.copyfile(empty_store, cold_db)
        runs.append(_run_child(campaign, workdir / f"out-{size}-cold", cache, cold_db, "cold"))
        if size != max(config.sizes):
            continue
        warm_out = workdir / f"out-{size}-warm"
        shutil.copyfile(empty_store, warm_db)
        runs.append(_run_child(campaign, warm_out, cache, warm_db, "warm"))
        # Same campaign name, one more cloak: the runner finds the warm run's finished cells and skips them.
        write_campaign(campaign, config, subset, [config.cloak, config.new_cloak])
        runs.append(_run_child(campaign, warm_out, cache, warm_db, f"rerun+{config.new_cloak}"))
    return EvaluationBenchmark(config, alignment, runs)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m benchmarks.evaluation CAMPAIGN.yaml OUT_DIR LABEL", file=sys.stderr)
        return 2
    run = run_in_process(Path(argv[0]), Path(argv[1]), argv[2])
    print(json.dumps({k: v for k, v in run.__dict__.items() if k != "process_seconds"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
