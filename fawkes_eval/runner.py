"""The audit runner: dataset -> cloaks -> victims x trackers -> result rows, MLflow runs and reports.

It sits on top of the rooms and reaches them only through the registries.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fawkes_eval.align import TEMPLATES, FaceAligner, NoFaceError, default_cache_dir, load_photo
from fawkes_eval.data import Dataset, DatasetError, load_dataset, split_dataset
from fawkes_eval.registry import CLOAKS, EXTRACTORS, REPORTS, SCENARIOS, TRACKERS
from fawkes_eval.results import ImageExample, ResultRow, config_hash, write_rows
from fawkes_eval.rooms import load_rooms
from fawkes_eval.tracking import RunLogger, environment
from fawkes_eval.types import CloakGenerator, FeatureExtractor

DEMO_DATA = Path(__file__).parent / "demo_data" / "lfw_sample"


@dataclass(frozen=True)
class AuditConfig:
    """Everything that determines an audit's numbers (with the code version and the data's bytes)."""

    data: str
    subset: str | None = None
    protected_users: tuple[str, ...] = ()  # empty: choose n_protected at random with the seed
    n_protected: int = 2
    cloaks: tuple[str, ...] = ("fawkes-v1.0:low", "fawkes-v1.0:mid", "fawkes-v1.0:high", "noise:high")
    surrogates: tuple[str, ...] = ("dlib-resnet-torch",)
    victims: tuple[str, ...] = ("dlib-resnet", "mobileface", "hse-faceres")
    trackers: tuple[str, ...] = ("1nn", "logreg")
    seeds: tuple[int, ...] = (0,)
    train_fraction: float = 0.7
    leak_ratio: float = 0.0
    n_boot: int = 2000
    experiment: str = "fawkes-eval"
    name: str = "audit"

    def __post_init__(self) -> None:
        for field_name in ("cloaks", "surrogates", "victims", "trackers", "seeds"):
            if not getattr(self, field_name):
                raise ValueError(f"{field_name} must not be empty")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")


@dataclass
class AuditOutcome:
    rows: list[ResultRow]
    out_dir: Path
    parent_run_id: str
    tracking_uri: str
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _say(stream: TextIO, message: str) -> None:
    print(message, file=stream, flush=True)


def _create_cloak(spec: str, surrogates: list[FeatureExtractor]) -> CloakGenerator:
    """Surrogate-driven cloaks get the surrogates; controls get their template (the surrogates' template)."""
    accepted = inspect.signature(CLOAKS.factory(spec)).parameters
    if "surrogates" in accepted:
        return CLOAKS.create(spec, surrogates=surrogates)
    return CLOAKS.create(spec, template=surrogates[0].info.template)


def _usable_photos(dataset: Dataset, aligner: FaceAligner, templates: set[str], stream: TextIO) -> tuple[
    list[np.ndarray], list[str], list[str], list[str]
]:
    """Decode and align every photo for every template; report and skip those that fail, by name."""
    photos, sources, identities, skipped = [], [], [], []
    for record in _progress(dataset.records, "faces"):
        source = str(record.path)
        try:
            photo = load_photo(record.path)
            for template in sorted(templates):
                aligner.align(photo, template, source)
        except (NoFaceError, OSError, ValueError) as e:
            skipped.append(f"{source}: {e}")
            _say(stream, f"skipped {e}")
            continue
        photos.append(photo)
        sources.append(source)
        identities.append(record.identity)
    return photos, sources, identities, skipped


def _progress(items: Any, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, file=sys.stderr, disable=None)


def _choose_protected(config: AuditConfig, identities: list[str], seed: int) -> list[str]:
    names = sorted(set(identities))
    if config.protected_users:
        missing = [u for u in config.protected_users if u not in names]
        if missing:
            raise DatasetError(f"protected users not in the dataset (or all their photos skipped): {missing}")
        return list(config.protected_users)
    if config.n_protected >= len(names):
        raise DatasetError(f"cannot protect {config.n_protected} of {len(names)} identities and keep others")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(names, size=config.n_protected, replace=False).tolist())


def run_audit(config: AuditConfig, out_root: Path, stream: TextIO = sys.stdout) -> AuditOutcome:
    """Run every (cloak, victim, tracker, seed) cell of the protection protocol and report it."""
    start = time.perf_counter()
    load_rooms()
    validate_names(config)
    dataset = load_dataset(config.data, config.subset)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = out_root / f"{config.name}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset.write_manifest(out_dir / "manifest.json")
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=1))

    models: dict[str, FeatureExtractor] = {}

    def model(name: str) -> FeatureExtractor:
        if name not in models:
            _say(stream, f"loading {name}")
            models[name] = EXTRACTORS.create(name)
        return models[name]

    surrogates = [model(s) for s in config.surrogates]
    victims = [model(v) for v in config.victims]
    aligner = FaceAligner(cache_dir=default_cache_dir())
    templates = {v.info.template for v in victims} | {s.info.template for s in surrogates}
    unknown = templates - set(TEMPLATES)
    if unknown:
        raise ValueError(f"models ask for unknown alignment templates: {sorted(unknown)}")
    _say(stream, f"dataset {dataset.name}: {len(dataset.identities)} identities, {len(dataset.records)} images")
    photos, sources, identities, skipped = _usable_photos(dataset, aligner, templates, stream)

    scenario = SCENARIOS.create(
        "protection", photos=photos, sources=sources, identities=identities, aligner=aligner,
        config=_protection_config(config),
    )
    env = environment()
    logger = RunLogger(config.experiment)
    parent = logger.start_parent(
        config.name,
        tags={"fe.kind": "campaign", "fe.config_hash": config_hash(asdict(config)), "fe.git": env["git"]},
        params={"dataset": dataset.name, "n_images": len(photos), "seeds": ",".join(map(str, config.seeds))},
    )
    rows: list[ResultRow] = []
    examples: list[ImageExample] = []
    n_cells = len(config.seeds) * len(config.cloaks) * len(victims) * len(config.trackers)
    done = 0
    for seed in config.seeds:
        split = split_dataset(_filtered(dataset, sources), seed, config.train_fraction)
        protected = _choose_protected(config, identities, seed)
        _say(stream, f"seed {seed}: protecting {', '.join(protected)}")
        for spec in config.cloaks:
            generator = _create_cloak(spec, surrogates)
            _say(stream, f"cloaking with {generator.name} ...")
            cloaked, seconds = scenario.cloak_users(generator, split, protected, seed)
            first = cloaked[min(cloaked)]
            examples.append(ImageExample(
                f"{generator.name} / {Path(first.source).name}", first.crop_clean,
                np.clip(np.rint(first.crop_cloaked), 0, 255).astype(np.uint8),
            ))
            cost = {
                "dssim": float(np.mean([c.crop_dssim for c in cloaked.values()])),
                "photo_dssim": float(np.mean([c.photo_metrics["dssim"] for c in cloaked.values()])),
                "psnr": float(np.mean([c.photo_metrics["psnr"] for c in cloaked.values()])),
                "linf": float(np.max([c.photo_metrics["linf"] for c in cloaked.values()])),
                "sec_per_image": seconds / len(cloaked),
            }
            for victim in victims:
                for tracker_name in config.trackers:
                    outcome = scenario.evaluate(
                        cloaked, victim, _tracker_factory(tracker_name), split, protected, seed
                    )
                    row = _row(config, dataset, generator, victim, tracker_name, seed, protected, outcome, cost,
                               len(photos), env)
                    logger.log_cell(parent, row, tags={"fe.victim_sha256": _hashes(victim),
                                                       "fe.victim_license": victim.info.license})
                    rows.append(row)
                    done += 1
                    _say(stream, f"[{done}/{n_cells}] {generator.name} -> {victim.info.name} / {tracker_name}: "
                                 f"PSR {outcome.psr}, others' acc {outcome.others_acc:.2f}")

    write_rows(rows, out_dir / "results.json")
    table = REPORTS.factory("markdown")(rows)
    measured_on = REPORTS.factory("provenance")(rows)
    (out_dir / "report.md").write_text(f"# {config.name}\n\n{table}\nMeasured on:\n{measured_on}")
    context = {
        "dataset": f"{dataset.name} ({len(photos)} usable images, {len(set(identities))} identities)",
        "manifest sha256": dataset.manifest_hash(),
        "skipped photos": str(len(skipped)),
        "surrogates": ", ".join(config.surrogates),
        "models": "; ".join(f"{m.info.name}: {_hashes(m)} ({m.info.license})" for m in models.values()),
        **{f"env {k}": v for k, v in env.items()},
        "config": json.dumps(asdict(config)),
    }
    html = REPORTS.factory("html")(f"fawkes-eval: {config.name}", rows, examples, context)
    (out_dir / "report.html").write_text(html)
    for artifact in ("report.html", "report.md", "results.json", "config.json", "manifest.json"):
        logger.log_artifact(parent, out_dir / artifact)
    logger.finish(parent)
    _say(stream, "\n" + table)
    _say(stream, f"Measured on:\n{measured_on}")
    elapsed = time.perf_counter() - start
    _say(stream, f"report: {out_dir / 'report.html'}\nmarkdown: {out_dir / 'report.md'}")
    _say(stream, f"MLflow: {logger.uri} (experiment {config.experiment!r}, parent run {parent}); "
                 f"view with: mlflow ui --backend-store-uri {logger.uri}")
    if skipped:
        _say(stream, f"{len(skipped)} photo(s) skipped (listed above)")
    _say(stream, f"elapsed: {elapsed:.0f} s")
    return AuditOutcome(rows, out_dir, parent, logger.uri, skipped, elapsed)


def validate_names(config: AuditConfig) -> None:
    """Fail before any compute on a component name or mode that is not registered."""
    for spec in config.cloaks:
        CLOAKS.mode_params(spec)
    for name in (*config.surrogates, *config.victims):
        EXTRACTORS.mode_params(name)
    for name in config.trackers:
        TRACKERS.mode_params(name)


def _filtered(dataset: Dataset, kept_sources: list[str]) -> Dataset:
    keep = set(kept_sources)
    return Dataset(dataset.root, tuple(r for r in dataset.records if str(r.path) in keep), dataset.name)


def _protection_config(config: AuditConfig) -> Any:
    from scenarios.protection import ProtectionConfig

    return ProtectionConfig(leak_ratio=config.leak_ratio, n_boot=config.n_boot)


def _tracker_factory(name: str) -> Callable[[], Any]:
    return lambda: TRACKERS.create(name)


def _hashes(model: FeatureExtractor) -> str:
    return ",".join(f"{k}={v[:12]}" for k, v in sorted(model.info.weight_sha256.items()))


def _row(config: AuditConfig, dataset: Dataset, generator: CloakGenerator, victim: FeatureExtractor,
         tracker: str, seed: int, protected: list[str], outcome: Any, cost: dict[str, float], n_images: int,
         env: dict[str, str]) -> ResultRow:
    cell = {
        "scenario": "protection", "cloak": generator.name, "surrogates": ",".join(config.surrogates),
        "victim": victim.info.name, "tracker": tracker, "countermeasure": "none",
        "leak_ratio": config.leak_ratio, "seed": seed, "cloak_params": json.dumps(generator.params(), default=str),
    }
    metrics = {
        "psr": outcome.psr.value, "psr_ci_low": outcome.psr.low, "psr_ci_high": outcome.psr.high,
        "top5": outcome.topk_psr, "others_acc": outcome.others_acc, **cost,
    }
    provenance = {
        "dataset": dataset.name, "manifest_sha256": dataset.manifest_hash(), "n_identities": outcome.n_identities,
        "n_images": n_images, "n_train": outcome.n_train, "n_queries": outcome.n_queries,
        "protected_users": protected, "victim_sha256": victim.info.weight_sha256, "victim_license": victim.info.license,
        "victim_family": victim.info.family, "environment": env,
    }
    return ResultRow(cell, metrics, outcome.per_user, provenance)
