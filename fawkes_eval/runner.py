"""The campaign runner: a campaign's cells -> result rows on disk, MLflow runs and reports.

It sits on top of the rooms and reaches them only through the registries. A cell's key is the hash of its
resolved configuration (``ResultRow.cell``); a finished cell is written to ``<out>/<campaign>/cells/<key>.json``
(atomically) before the next one starts and logged as a child of the campaign's parent run, so a killed campaign
resumes where it stopped and never logs a cell twice. Costly work is cached on disk by content: aligned faces
(``fawkes_eval.align``), cloak outputs and embeddings (here, through ``fawkes_eval.cache.ArrayStore``), so a
rerun with one new cloak computes only that cloak's cells.

Results folder of a campaign (``outputs.dir/<campaign name>/``)::

    config.json            the resolved campaign (campaign.yaml: the file it was read from)
    manifests/<dataset>.json  sha256 of every image used
    cells/<key>.json       one ResultRow per finished cell
    errors.json            one row per file left out: dataset, file, reason, kind (refused, unreadable, no-face)
    examples/<job>.json    clean / cloaked face crops (PNG beside it) per cloaking run, for image grids
    results.json           the campaign's rows, in grid order
    report.md, report.html
"""

from __future__ import annotations

import inspect
import io
import json
import re
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fawkes_eval.align import TEMPLATES, FaceAligner, NoFaceError, PhotoFiles, default_cache_dir, load_photo
from fawkes_eval.cache import ArrayStore, atomic_write_bytes, atomic_write_text, content_digest
from fawkes_eval.campaign import (
    NO_COUNTERMEASURE,
    Campaign,
    CampaignError,
    Cell,
    DatasetSpec,
    GridSpec,
    ProtectedSpec,
    ProtocolSpec,
    check_components,
)
from fawkes_eval.data import Dataset, DatasetError, FileError, Split, load_dataset, split_dataset
from fawkes_eval.executors import Executor, LocalExecutor
from fawkes_eval.registry import CLOAKS, COUNTERMEASURES, EXTRACTORS, REPORTS, SCENARIOS, TRACKERS
from fawkes_eval.results import ImageExample, ResultRow, config_hash
from fawkes_eval.rooms import load_rooms
from fawkes_eval.tracking import RunLogger, TrackingUnavailable, environment, git_revision
from fawkes_eval.types import CloakGenerator, CloakOutput, FeatureExtractor

DEMO_DATA = Path(__file__).parent / "demo_data" / "lfw_sample"
USER_MODEL_HOOK = "recognizers.user_model:register_user_model"  # called once per ``models:`` entry
LEFT_OUT = "errors.json"  # in the results folder: one row per file left out


@dataclass(frozen=True)
class AuditConfig:
    """The flat options of ``fawkes-eval audit`` / ``demo``: one dataset and one surrogate set."""

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

    def to_campaign(self) -> Campaign:
        root = Path(self.data).resolve()
        return Campaign(
            study=self.experiment,
            name=self.name,
            datasets=(DatasetSpec(_safe_name(Path(self.subset).stem if self.subset else root.name), root,
                                  Path(self.subset).resolve() if self.subset else None),),
            grid=GridSpec(self.cloaks, (self.surrogates,), self.victims, self.trackers,
                          leak_ratios=(self.leak_ratio,), seeds=self.seeds),
            protected=ProtectedSpec(self.protected_users, len(self.protected_users) or self.n_protected),
            protocol=ProtocolSpec(train_fraction=self.train_fraction, n_boot=self.n_boot),
        )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "dataset"


# --- the plan: cells with keys --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellTask:
    """A cell as a worker receives it: the cell, its resolved configuration (the row's ``cell``) and keys."""

    cell: Cell
    config: Mapping[str, Any]
    key: str  # config_hash(config) == ResultRow.key == MLflow tag fe.config_hash
    group: str  # key of the cloaking run this cell shares with others (dataset, seed, cloak, surrogates)
    needs_gpu: bool  # its cloak optimises through networks

    @property
    def label(self) -> str:
        return self.cell.label


@dataclass(frozen=True)
class RunContext:
    """What every worker needs besides its cell; absolute paths, so workers on other hosts can share them."""

    campaign: Campaign
    templates: tuple[str, ...]  # every alignment template of the campaign: the usable photos are the same everywhere
    cache_dir: Path
    results_dir: Path
    tracking_uri: str
    parent_run_id: str
    # CPU torch sums in a thread-count-dependent order, so every process computes with the driver's thread count:
    # then the local and Ray executors give bit-identical cloaks and embeddings on the same hardware
    torch_threads: int = 1


@dataclass
class CampaignPlan:
    campaign: Campaign
    datasets: dict[str, Dataset]
    tasks: list[CellTask]


def _protected_label(spec: ProtectedSpec) -> str:
    return ",".join(spec.users) if spec.users else f"random {spec.count}"


def plan_campaign(campaign: Campaign) -> CampaignPlan:
    """Hash the datasets and resolve every cell's configuration and key (no model is loaded)."""
    datasets = {d.name: load_dataset(d.root, d.subset, d.name) for d in campaign.datasets}
    p = campaign.protocol
    tasks = []
    for cell in campaign.cells():
        config: dict[str, Any] = {
            "scenario": p.scenario, "dataset": cell.dataset, "dataset_sha256": datasets[cell.dataset].manifest_hash(),
            "cloak": cell.cloak, "surrogates": ",".join(cell.surrogates), "victim": cell.victim,
            "tracker": cell.tracker, "countermeasure": cell.countermeasure,
            "countermeasure_side": p.countermeasure_side if cell.countermeasure != NO_COUNTERMEASURE else "",
            "leak_ratio": cell.leak_ratio, "seed": cell.seed, "protected": _protected_label(campaign.protected),
            "train_fraction": p.train_fraction, "n_boot": p.n_boot, "topk": p.topk,
        }
        group = config_hash({k: config[k] for k in ("dataset_sha256", "cloak", "surrogates", "seed", "protected",
                                                     "train_fraction")})
        tasks.append(CellTask(cell, config, config_hash(config), group, _optimises(cell.cloak)))
    return CampaignPlan(campaign, datasets, tasks)


def _optimises(cloak: str) -> bool:
    """Cloaks that take surrogates run optimisation through networks (a GPU helps); controls take a template."""
    return "surrogates" in inspect.signature(CLOAKS.factory(cloak)).parameters


def _create_cloak(spec: str, surrogates: list[FeatureExtractor]) -> CloakGenerator:
    if _optimises(spec):
        return CLOAKS.create(spec, surrogates=surrogates)
    return CLOAKS.create(spec, template=surrogates[0].info.template)


_USER_MODELS: dict[str, Path] = {}  # registered in this process from campaign files: name -> file


def register_user_models(campaign: Campaign) -> None:
    """The ``models:`` hook: hand each entry to ``recognizers.user_model.register_user_model``."""
    if not campaign.models:
        return
    import importlib

    module_name, attr = USER_MODEL_HOOK.split(":")
    try:
        register = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise CampaignError(f"{campaign.where('models')}: models: this installation has no {USER_MODEL_HOOK} "
                            "to register user models with") from None
    for i, model in enumerate(campaign.models):
        where = f"{campaign.where(f'models[{i}]')}: models[{i}]"
        if _USER_MODELS.get(model.name) == model.file:
            continue  # this process registered it already (a worker running a second cell)
        if model.name in EXTRACTORS:
            raise CampaignError(f"{where}: the name {model.name!r} is taken by a registered extractor")
        try:
            register(name=model.name, path=model.file, **dict(model.options))
        except (ValueError, TypeError, OSError) as e:
            raise CampaignError(f"{where}: {e}") from None
        _USER_MODELS[model.name] = model.file


# --- on-disk caches by content --------------------------------------------------------------------------------

def _weights_id(model: FeatureExtractor) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(model.info.weight_sha256.items()))


class CachedCloak:
    """A cloak generator whose outputs are kept on disk, keyed by its name, parameters, surrogate weights, seed
    and the exact input faces (a batch: some cloaks draw per-batch noise, so batches are not split)."""

    def __init__(self, inner: CloakGenerator, store: ArrayStore, surrogates: Sequence[FeatureExtractor]) -> None:
        self.inner = inner
        self.store = store
        self.name = inner.name
        self.template = inner.template
        self._identity = json.dumps(
            {"name": inner.name, "params": inner.params(), "surrogates": [_weights_id(s) for s in surrogates]},
            sort_keys=True, default=str,
        )

    def params(self) -> dict[str, object]:
        return self.inner.params()

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        key = content_digest(self._identity, str(seed), faces)
        hit = self.store.get(key)
        if hit is not None:
            return CloakOutput(hit["faces"], hit["dssim"], float(hit["seconds"]))
        out = self.inner.cloak(faces, seed)
        self.store.put(key, {"faces": out.faces, "dssim": out.dssim, "seconds": np.array(out.seconds)})
        return out


class CachedExtractor:
    """An extractor whose embeddings are kept on disk per face, keyed by the model (name, preprocessing, weight
    hashes) and the exact face crop. Anything else (``torch_module``, ...) is the wrapped extractor's."""

    def __init__(self, inner: FeatureExtractor, store: ArrayStore) -> None:
        self.inner = inner
        self.info = inner.info
        self.store = store
        self._identity = json.dumps(
            {"name": inner.info.name, "preprocessing": inner.info.preprocessing, "weights": _weights_id(inner)},
            sort_keys=True,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, faces: np.ndarray) -> np.ndarray:
        keys = [content_digest(self._identity, face) for face in faces]
        found = [self.store.get(k) for k in keys]
        missing = [i for i, hit in enumerate(found) if hit is None]
        vectors: dict[int, np.ndarray] = {i: hit["embedding"] for i, hit in enumerate(found) if hit is not None}
        if missing:
            computed = self.inner.embed(faces[missing])
            for i, v in zip(missing, computed, strict=True):
                self.store.put(keys[i], {"embedding": v})
                vectors[i] = v
        return np.stack([vectors[i] for i in range(len(faces))])


# --- the worker side: a per-process workspace ------------------------------------------------------------------

@dataclass
class PreparedData:
    """A dataset's photos that every template of the campaign can align; the rest are reported and skipped.

    Photos are read from their files when used (``PhotoFiles``), so memory does not grow with the dataset.
    """

    dataset: Dataset
    photos: PhotoFiles
    sources: list[str]
    identities: list[str]
    skipped: list[FileError]  # the loader's refusals, then the photos that failed to decode or align
    splits: dict[int, Split] = field(default_factory=dict)

    def split(self, seed: int, train_fraction: float) -> Split:
        if seed not in self.splits:
            keep = set(self.sources)
            usable = Dataset(self.dataset.root, tuple(r for r in self.dataset.records if str(r.path) in keep),
                             self.dataset.name)
            self.splits[seed] = split_dataset(usable, seed, train_fraction)
        return self.splits[seed]

    def protected(self, spec: ProtectedSpec, seed: int) -> list[str]:
        """The protected users: those named, or ``count`` drawn with ``seed`` among the identities with at least
        two usable photos (one to cloak and upload, one to query)."""
        counts = Counter(self.identities)
        names = sorted(n for n, c in counts.items() if c >= 2)
        if spec.users:
            missing = [u for u in spec.users if u not in names]
            if missing:
                raise DatasetError(f"{self.dataset.name}: protected users need at least 2 usable photos; not in "
                                   f"the dataset, or fewer left after skipped photos: {missing}")
            return list(spec.users)
        if spec.count >= len(counts) or spec.count > len(names):
            raise DatasetError(f"{self.dataset.name}: cannot protect {spec.count} of {len(counts)} identities "
                               f"({len(names)} with 2 or more usable photos) and keep others")
        return sorted(np.random.default_rng(seed).choice(names, size=spec.count, replace=False).tolist())


class Workspace:
    """What a process keeps between cells: the aligner, models, prepared datasets, cloak generators, scenarios."""

    def __init__(self, context: RunContext, stream: TextIO | None = None) -> None:
        load_rooms()
        register_user_models(context.campaign)
        self.context = context
        self.stream = stream
        self.aligner = FaceAligner(cache_dir=context.cache_dir)
        self.cloak_store = ArrayStore(context.cache_dir, "cloaks")
        self.embedding_store = ArrayStore(context.cache_dir, "embeddings")
        self.models: dict[str, FeatureExtractor] = {}
        self.data: dict[str, PreparedData] = {}
        self.generators: dict[tuple[str, tuple[str, ...]], CachedCloak] = {}
        self.scenarios: dict[tuple[str, tuple[str, ...], float], Any] = {}
        self.cloaked: dict[str, tuple[dict[int, Any], float]] = {}
        self.environment = environment()  # library versions, device and git revision, recorded with every row

    def say(self, message: str) -> None:
        if self.stream is not None:
            print(message, file=self.stream, flush=True)

    def model(self, name: str) -> FeatureExtractor:
        if name not in self.models:
            self.say(f"loading {name}")
            self.models[name] = CachedExtractor(EXTRACTORS.create(name), self.embedding_store)
        return self.models[name]

    def prepared(self, name: str) -> PreparedData:
        if name not in self.data:
            spec = self.context.campaign.dataset(name)
            dataset = load_dataset(spec.root, spec.subset, spec.name)
            sources, identities, skipped = [], [], list(dataset.errors)
            for record in _progress(dataset.records, f"aligning {name}"):
                source = str(record.path)
                try:
                    photo = load_photo(record.path)
                    for template in self.context.templates:
                        self.aligner.align(photo, template, source)
                except (NoFaceError, OSError, ValueError) as e:
                    # the messages of load_photo and the aligner start with the file's path
                    reason = str(e).removeprefix(f"{source}: ")
                    skipped.append(FileError(source, reason, "no-face" if isinstance(e, NoFaceError) else "unreadable"))
                    self.say(f"skipped {source}: {reason}")
                    continue
                sources.append(source)
                identities.append(record.identity)
            self.data[name] = PreparedData(dataset, PhotoFiles(sources), sources, identities, skipped)
        return self.data[name]

    def generator(self, cloak: str, surrogates: tuple[str, ...]) -> CachedCloak:
        key = (cloak, surrogates)
        if key not in self.generators:
            models = [self.model(s) for s in surrogates]
            self.generators[key] = CachedCloak(_create_cloak(cloak, models), self.cloak_store, models)
        return self.generators[key]

    def scenario(self, dataset: str, surrogates: tuple[str, ...], leak_ratio: float) -> Any:
        """One protection scenario per (dataset, surrogate set, leak ratio), the leak ratio being part of its
        configuration; it keeps cloaked photos and embeddings in memory across the cells it serves."""
        key = (dataset, surrogates, leak_ratio)
        if key not in self.scenarios:
            from scenarios.protection import ProtectionConfig

            data = self.prepared(dataset)
            p = self.context.campaign.protocol
            self.scenarios[key] = SCENARIOS.create(
                "protection", photos=data.photos, sources=data.sources, identities=data.identities,
                aligner=self.aligner, config=ProtectionConfig(leak_ratio=leak_ratio, topk=p.topk, n_boot=p.n_boot),
            )
        return self.scenarios[key]


_WORKSPACES: dict[str, Workspace] = {}


def workspace(context: RunContext, stream: TextIO | None = None) -> Workspace:
    """This process's workspace for ``context``'s campaign (Ray reuses worker processes across tasks)."""
    import torch

    torch.set_num_threads(context.torch_threads)  # before anything computes (see RunContext.torch_threads)
    key = json.dumps([context.campaign.fingerprint(), str(context.cache_dir)])
    if key not in _WORKSPACES:
        _WORKSPACES.clear()  # one campaign at a time per process: drop the previous one's models and photos
        _WORKSPACES[key] = Workspace(context, stream)
    ws = _WORKSPACES[key]
    ws.context = context
    return ws


def prepare_group(task: CellTask, context: RunContext) -> None:
    """The step a group of cells shares: cloak the protected users' photos (and fill the on-disk cache)."""
    _cloaked_photos(task, context, workspace(context))


def _cloaked_photos(task: CellTask, context: RunContext, ws: Workspace) -> tuple[dict[int, Any], float]:
    cell = task.cell
    if task.group not in ws.cloaked:
        data = ws.prepared(cell.dataset)
        split = data.split(cell.seed, context.campaign.protocol.train_fraction)
        protected = data.protected(context.campaign.protected, cell.seed)
        generator = ws.generator(cell.cloak, cell.surrogates)
        scenario = ws.scenario(cell.dataset, cell.surrogates, cell.leak_ratio)
        ws.say(f"cloaking with {cell.cloak} (seed {cell.seed}, protecting {', '.join(protected)}) ...")
        cloaked, seconds = scenario.cloak_users(generator, split, protected, cell.seed)
        _write_example(context.results_dir / "examples", task, cloaked)
        ws.cloaked[task.group] = (cloaked, seconds)
    return ws.cloaked[task.group]


def _write_example(folder: Path, task: CellTask, cloaked: dict[int, Any]) -> None:
    """One clean / cloaked face crop per cloaking run, for the report's image grid (``reports.examples`` layout;
    ``<group>.json`` holds the label until the driver writes the ``examples.json`` index)."""
    meta = folder / f"{task.group}.json"
    if meta.exists():
        return
    from PIL import Image

    first = cloaked[min(cloaked)]
    images = {"clean": first.crop_clean, "cloaked": np.clip(np.rint(first.crop_cloaked), 0, 255).astype(np.uint8)}
    for kind, pixels in images.items():
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        atomic_write_bytes(folder / f"{task.group}.{kind}.png", png.getvalue())
    atomic_write_text(meta, json.dumps({
        "label": f"{task.cell.cloak} / {Path(first.source).name}",
        "clean": f"{task.group}.clean.png", "cloaked": f"{task.group}.cloaked.png",
    }))


_GAVE_UP_LOGGING: set[str] = set()  # tracking URIs this process waited out: later cells do not wait again


def execute_cell(task: CellTask, context: RunContext) -> ResultRow:
    """Compute one cell, write it to ``cells/<key>.json`` and log it under the parent run; returns the row.

    A tracking server that stays down past its patience costs the logging, not the result: the row is on disk,
    the rest of the campaign runs without waiting again, and the driver (or a rerun) logs what is missing."""
    ws = workspace(context)
    row = _compute(task, context, ws)
    write_cell(context.results_dir, row)
    if context.tracking_uri not in _GAVE_UP_LOGGING:
        try:
            RunLogger(context.campaign.study, context.tracking_uri).log_cell(context.parent_run_id, row, cell_tags(row))
        except TrackingUnavailable as e:
            _GAVE_UP_LOGGING.add(context.tracking_uri)
            ws.say(f"not logged to MLflow (saved in {context.results_dir / 'cells'}; a rerun logs it): {e}")
    return row


def _compute(task: CellTask, context: RunContext, ws: Workspace) -> ResultRow:
    cell = task.cell
    p = context.campaign.protocol
    data = ws.prepared(cell.dataset)
    split = data.split(cell.seed, p.train_fraction)
    protected = data.protected(context.campaign.protected, cell.seed)
    cloaked, seconds = _cloaked_photos(task, context, ws)
    scenario = ws.scenario(cell.dataset, cell.surrogates, cell.leak_ratio)
    victim = ws.model(cell.victim)
    outcome = scenario.evaluate(cloaked, victim, _tracker_factory(cell.tracker), split, protected, cell.seed,
                                **_countermeasure_arguments(scenario, cell, p))
    metrics = {
        "psr": outcome.psr.value, "psr_ci_low": outcome.psr.low, "psr_ci_high": outcome.psr.high,
        "top5": outcome.topk_psr, "others_acc": outcome.others_acc,
        "dssim": float(np.mean([c.crop_dssim for c in cloaked.values()])),
        "photo_dssim": float(np.mean([c.photo_metrics["dssim"] for c in cloaked.values()])),
        "psnr": float(np.mean([c.photo_metrics["psnr"] for c in cloaked.values()])),
        "linf": float(np.max([c.photo_metrics["linf"] for c in cloaked.values()])),
        "sec_per_image": seconds / len(cloaked),
    }
    generator = ws.generator(cell.cloak, cell.surrogates)
    surrogates = [ws.model(s) for s in cell.surrogates]
    provenance = {
        "dataset": data.dataset.name, "manifest_sha256": data.dataset.manifest_hash(),
        "n_identities": outcome.n_identities, "n_images": len(data.photos), "n_skipped_photos": len(data.skipped),
        "n_train": outcome.n_train, "n_queries": outcome.n_queries, "protected_users": protected,
        "cloak_params": generator.params(),
        "victim_sha256": victim.info.weight_sha256, "victim_license": victim.info.license,
        "victim_family": victim.info.family,
        "surrogate_sha256": {s.info.name: s.info.weight_sha256 for s in surrogates},
        "surrogate_license": {s.info.name: s.info.license for s in surrogates},
        "campaign": context.campaign.name, "environment": ws.environment,
    }
    return ResultRow(dict(task.config), metrics, outcome.per_user, provenance)


def _countermeasure_arguments(scenario: Any, cell: Cell, protocol: ProtocolSpec) -> dict[str, Any]:
    """Keywords for ``ProtectionScenario.evaluate``: a countermeasure object and the side it acts on."""
    if cell.countermeasure == NO_COUNTERMEASURE:
        return {}
    if "countermeasure" not in inspect.signature(scenario.evaluate).parameters:
        raise CampaignError(f"countermeasure {cell.countermeasure!r}: this version's protection scenario does not "
                            "take countermeasures")
    return {"countermeasure": COUNTERMEASURES.create(cell.countermeasure), "side": protocol.countermeasure_side}


def _tracker_factory(name: str) -> Callable[[], Any]:
    return lambda: TRACKERS.create(name)


def _compact_hashes(hashes: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v[:12]}" for k, v in sorted(hashes.items()))


def cell_tags(row: ResultRow) -> dict[str, str]:
    """MLflow tags of a cell beyond its configuration: versions, model hashes and licenses (from provenance)."""
    p = row.provenance
    env = p.get("environment", {})
    return {
        "fe.git": str(env.get("git", "unknown")), "fe.fawkes_eval": str(env.get("fawkes_eval", "")),
        "fe.torch": str(env.get("torch", "")), "fe.device": str(env.get("device", "")),
        "fe.cloak_params": json.dumps(p.get("cloak_params", {}), sort_keys=True, default=str),
        "fe.victim_sha256": _compact_hashes(p.get("victim_sha256", {})),
        "fe.victim_license": str(p.get("victim_license", "")),
        "fe.surrogate_sha256": "; ".join(f"{name}: {_compact_hashes(h)}"
                                         for name, h in sorted(p.get("surrogate_sha256", {}).items())),
        "fe.surrogate_license": "; ".join(f"{name}: {lic}" for name, lic in sorted(p.get("surrogate_license", {}).items())),
        "fe.protected_users": ",".join(p.get("protected_users", [])),
    }


def write_cell(results_dir: Path, row: ResultRow) -> None:
    atomic_write_text(results_dir / "cells" / f"{row.key}.json", json.dumps(row.to_dict(), indent=1, default=str))


def read_cell(results_dir: Path, key: str) -> ResultRow | None:
    """A finished cell's row, or None (absent, or not a readable row with this key)."""
    path = results_dir / "cells" / f"{key}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        row = ResultRow.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return row if row.key == key else None


# --- what a plan will cost ------------------------------------------------------------------------------------

# Rough rates on 2 CPU cores, to size a campaign before it runs (a GPU cloaks ~50x faster): DESIGN.md's calibration
# of Fawkes v1.0 at mid (about 1 s per image, batch 14) and the zoo's embedding speed measured on this class of
# machine (dlib ResNet-29, about 0.05 s per photo including alignment). Caches make reruns far cheaper.
SECONDS_PER_CLOAKED_PHOTO = 1.0
SECONDS_PER_CONTROL_PHOTO = 0.02
SECONDS_PER_EMBEDDED_PHOTO = 0.05


@dataclass(frozen=True)
class CostEstimate:
    cells: int
    cloaking_runs: int
    photos_to_cloak: int
    photos_to_embed: int
    seconds: float

    def describe(self) -> str:
        return (f"{self.cells} cell(s) to run: {self.cloaking_runs} cloaking run(s), ~{self.photos_to_cloak} photos to "
                f"cloak, ~{self.photos_to_embed} photo embeddings; roughly {self.seconds / 60:.1f} min on 2 CPU cores "
                "without caches (at most; cached work is not repeated)")


def estimate_cost(plan: CampaignPlan, tasks: Sequence[CellTask]) -> CostEstimate:
    """Upper-bound work of ``tasks``, from image counts of the datasets' manifests and the rates above."""
    c = plan.campaign
    train_photos = {}
    for name, dataset in plan.datasets.items():
        per_identity = {i: len(r) for i, r in dataset.by_identity().items()}
        users = c.protected.users or sorted(per_identity, key=per_identity.__getitem__)[-c.protected.count:]
        train_photos[name] = sum(round(c.protocol.train_fraction * per_identity.get(u, 0)) for u in users)
    groups = {t.group: t for t in tasks}
    to_cloak = sum(train_photos[t.cell.dataset] for t in groups.values())
    seconds = sum(train_photos[t.cell.dataset] * (SECONDS_PER_CLOAKED_PHOTO if t.needs_gpu else SECONDS_PER_CONTROL_PHOTO)
                  for t in groups.values())
    # every photo once per victim and countermeasure (a transformed photo is a new photo), and the cloaked uploads
    embeds = {(t.cell.dataset, t.cell.victim, t.cell.countermeasure) for t in tasks}
    to_embed = sum(len(plan.datasets[d].records) for d, _, _ in embeds)
    cloaked_uploads = {(t.group, t.cell.victim, t.cell.countermeasure): train_photos[t.cell.dataset] for t in tasks}
    to_embed += sum(cloaked_uploads.values())
    seconds += to_embed * SECONDS_PER_EMBEDDED_PHOTO
    return CostEstimate(len(tasks), len(groups), to_cloak, to_embed, seconds)


def describe_plan(plan: CampaignPlan, results_dir: Path | None, stream: TextIO | None = None) -> list[CellTask]:
    """Print the grid, each cell (with done / todo when ``results_dir`` is given) and the cost; returns the todo."""
    stream = stream or sys.stdout
    c = plan.campaign
    g = c.grid
    axes = [(len(c.datasets), "dataset"), (len(g.seeds), "seed"), (len(g.cloaks), "cloak"),
            (len(g.surrogates), "surrogate set"), (len(g.victims), "victim"), (len(g.trackers), "tracker"),
            (len(g.countermeasures), "countermeasure"), (len(g.leak_ratios), "leak ratio")]
    _say(stream, f"campaign {c.name} (MLflow experiment {c.study!r}){f' from {c.source}' if c.source else ''}")
    _say(stream, f"{len(plan.tasks)} cells = " + " x ".join(f"{n} {what}{'s' if n > 1 else ''}" for n, what in axes))
    for name, dataset in plan.datasets.items():
        _say(stream, f"dataset {name}: {len(dataset.records)} images, {len(dataset.identities)} identities, "
                     f"manifest sha256 {dataset.manifest_hash()[:12]} ({dataset.root})")
    _say(stream, f"protected: {_protected_label(c.protected)}; protocol: {c.protocol.scenario}, train fraction "
                 f"{c.protocol.train_fraction:g}, {c.protocol.n_boot} bootstrap resamples")
    todo = []
    for task in plan.tasks:
        done = results_dir is not None and read_cell(results_dir, task.key) is not None
        status = "done" if done else ("todo" if results_dir is not None else "cell")
        if not done:
            todo.append(task)
        _say(stream, f"  {status}  {task.key}  {task.label}")
    _say(stream, "estimate: " + estimate_cost(plan, todo).describe())
    return todo


# --- the driver ------------------------------------------------------------------------------------------------

@dataclass
class CampaignOutcome:
    rows: list[ResultRow]
    out_dir: Path
    parent_run_id: str
    tracking_uri: str
    ran: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)  # errors.json: one row per file left out
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """0: every cell ran and every file was usable or merely had no face; 1: a cell failed, or a file
        was refused or unreadable."""
        return 1 if self.failed or any(e["kind"] != "no-face" for e in self.left_out) else 0


def _say(stream: TextIO, message: str) -> None:
    print(message, file=stream, flush=True)


def _progress(items: Any, desc: str, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr, disable=None)


def results_dir_of(campaign: Campaign, out_root: Path | None = None) -> Path:
    return ((out_root or campaign.outputs.dir) / campaign.name).resolve()


def prepare_campaign(campaign: Campaign) -> CampaignPlan:
    """Check names against the registries and plan the cells; nothing is computed or written."""
    load_rooms()
    register_user_models(campaign)
    check_components(campaign)
    return plan_campaign(campaign)


def run_campaign(
    campaign: Campaign,
    out_root: Path | None = None,
    executor: Executor | None = None,
    stream: TextIO | None = None,
) -> CampaignOutcome:
    """Run every unfinished cell of ``campaign`` with ``executor`` (default: in this process) and report.

    Finished cells (``cells/<key>.json``) are not computed again; cells missing from the parent MLflow run are
    logged. ``out_root`` replaces ``outputs.dir``.
    """
    start = time.perf_counter()
    stream = stream or sys.stdout
    plan = prepare_campaign(campaign)
    results_dir = results_dir_of(campaign, out_root)
    _write_campaign_files(campaign, plan, results_dir)

    finished = {t.key: row for t in plan.tasks if (row := read_cell(results_dir, t.key)) is not None}
    todo = [t for t in plan.tasks if t.key not in finished]
    logger = RunLogger(campaign.study)
    parent = logger.open_parent(
        campaign.name, campaign.fingerprint(),
        tags={"fe.git": git_revision(), "fe.study": campaign.study, "fe.campaign": campaign.name,
              "fe.source": str(campaign.source or "")},
        params={"datasets": ",".join(plan.datasets), "n_cells": len(plan.tasks),
                "seeds": ",".join(map(str, campaign.grid.seeds))},
    )
    _say(stream, f"campaign {campaign.name}: {len(plan.tasks)} cells, {len(finished)} already done, "
                 f"{len(todo)} to run")

    failed: list[str] = []
    rows_by_key = dict(finished)
    left_out = _read_left_out(results_dir)
    if todo:
        import torch

        context = RunContext(campaign, (), default_cache_dir().resolve(), results_dir, logger.uri, parent,
                             torch.get_num_threads())
        # the templates of every model decide which photos are usable, so they are fixed before any cell runs
        driver = workspace(context, stream)
        context = replace(context, templates=_templates(campaign, driver))
        driver.context = context
        # every photo is checked (and aligned into the on-disk cache) here, once, whatever the executor
        left_out = [e.to_dict(name) for name in plan.datasets for e in driver.prepared(name).skipped]
        atomic_write_text(results_dir / LEFT_OUT, json.dumps(left_out, indent=1))
        if executor is not None and not isinstance(executor, LocalExecutor):
            _WORKSPACES.clear()  # the workers load their own models
        bar = _progress(None, "cells", total=len(todo))

        def on_done(task: CellTask, result: ResultRow | BaseException) -> None:
            bar.update(1)
            if isinstance(result, BaseException):
                failed.append(f"{task.label}: {_describe(result)}")
                _say(stream, f"FAILED {task.label}: {_describe(result)}")
                return
            rows_by_key[task.key] = result
            m = result.metrics
            _say(stream, f"[{len(rows_by_key)}/{len(plan.tasks)}] {task.label}: PSR {m['psr']:.2f} "
                         f"[{m['psr_ci_low']:.2f}, {m['psr_ci_high']:.2f}], others' acc {m['others_acc']:.2f}")

        (executor or LocalExecutor()).run(todo, prepare_group, execute_cell, context, on_done)
        bar.close()

    rows = [rows_by_key[t.key] for t in plan.tasks if t.key in rows_by_key]
    # finished cells missing from the parent run: computed before a kill, by an earlier version of this campaign
    # file, or saved while the server was down (in any worker); logged now, or a clean failure and a rerun logs them
    _GAVE_UP_LOGGING.clear()
    logged = logger.logged_cells(parent)
    for row in rows:
        if row.key not in logged:
            logger.log_cell(parent, row, cell_tags(row))
    _write_results(campaign, plan, rows, left_out, results_dir, logger, parent, stream)
    logger.finish(parent, "FINISHED" if not failed else "FAILED")
    elapsed = time.perf_counter() - start
    ran = len(todo) - len(failed)
    outcome = CampaignOutcome(rows, results_dir, parent, logger.uri, ran, len(finished), failed, left_out, elapsed)
    _say(stream, f"report: {results_dir / 'report.html'}\nmarkdown: {results_dir / 'report.md'}\n"
                 f"results: {results_dir / 'results.json'}")
    _say(stream, f"MLflow: {logger.uri} (experiment {campaign.study!r}, parent run {parent}); "
                 f"view with: mlflow ui --backend-store-uri {logger.uri}")
    if left_out:
        _say(stream, f"files left out ({results_dir / LEFT_OUT}):")
        for e in left_out:
            _say(stream, f"  [{e['kind']}] {e['file']}: {e['reason']}")
    for line in failed:
        _say(stream, f"failed: {line}")
    _say(stream, summary_line(campaign, outcome))
    return outcome


def summary_line(campaign: Campaign, outcome: CampaignOutcome) -> str:
    total = len(outcome.rows) + len(outcome.failed)
    no_face = sum(e["kind"] == "no-face" for e in outcome.left_out)
    return (f"{campaign.name}: {total} cells: {outcome.ran} run, {outcome.reused} skipped (already done), "
            f"{len(outcome.failed)} failed; {len(outcome.left_out)} file(s) left out ({no_face} without a "
            f"detectable face); elapsed: {outcome.seconds:.0f} s")


def _read_left_out(results_dir: Path) -> list[dict[str, str]]:
    """The left-out files of an earlier run of this campaign (a rerun with nothing to do reports them too)."""
    path = results_dir / LEFT_OUT
    return list(json.loads(path.read_text())) if path.exists() else []


def _describe(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return lines[-1].strip() if lines else repr(error)


def _templates(campaign: Campaign, ws: Workspace) -> tuple[str, ...]:
    names = {s for group in campaign.grid.surrogates for s in group} | set(campaign.grid.victims)
    templates = {ws.model(n).info.template for n in sorted(names)}
    unknown = templates - set(TEMPLATES)
    if unknown:
        raise ValueError(f"models ask for unknown alignment templates: {sorted(unknown)}")
    return tuple(sorted(templates))


def _write_campaign_files(campaign: Campaign, plan: CampaignPlan, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / "config.json", json.dumps(campaign.to_dict(), indent=1))
    if campaign.source is not None:
        shutil.copyfile(campaign.source, results_dir / "campaign.yaml")
    for name, dataset in plan.datasets.items():
        (results_dir / "manifests").mkdir(exist_ok=True)
        dataset.write_manifest(results_dir / "manifests" / f"{name}.json")


def _examples(results_dir: Path, plan: CampaignPlan) -> list[ImageExample]:
    """Write the ``examples.json`` index of this campaign's cloaking runs (grid order) and read the pairs."""
    from reports.examples import INDEX, read_examples

    folder = results_dir / "examples"
    metas = [folder / f"{group}.json" for group in dict.fromkeys(t.group for t in plan.tasks)]
    index = [json.loads(m.read_text()) for m in metas if m.exists()]
    if not index:
        return []
    atomic_write_text(folder / INDEX, json.dumps(index, indent=1))
    return read_examples(folder)


def _example_files(folder: Path) -> list[str]:
    """The index and the PNGs it names."""
    index = folder / "examples.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text())
    return ["examples.json", *(e[kind] for e in entries for kind in ("clean", "cloaked"))]


def _write_results(campaign: Campaign, plan: CampaignPlan, rows: list[ResultRow], left_out: list[dict[str, str]],
                   results_dir: Path, logger: RunLogger, parent: str, stream: TextIO) -> None:
    atomic_write_text(results_dir / "results.json", json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    atomic_write_text(results_dir / LEFT_OUT, json.dumps(left_out, indent=1))
    artifacts = ["results.json", "config.json", LEFT_OUT, *(["campaign.yaml"] if campaign.source else [])]
    example_pairs = _examples(results_dir, plan)
    examples = _example_files(results_dir / "examples")
    if rows:
        table = REPORTS.factory("markdown")(rows)
        measured_on = REPORTS.factory("provenance")(rows)
        if "markdown" in campaign.outputs.reports:
            atomic_write_text(results_dir / "report.md", f"# {campaign.name}\n\n{table}\nMeasured on:\n{measured_on}"
                                                         f"{_left_out_markdown(left_out)}")
            artifacts.append("report.md")
        if "html" in campaign.outputs.reports:
            env = rows[0].provenance.get("environment", {})
            context = {
                "datasets": "; ".join(f"{n} ({len(d.records)} images, {len(d.identities)} identities, manifest sha256 "
                                      f"{d.manifest_hash()})" for n, d in plan.datasets.items()),
                "surrogates": "; ".join(",".join(s) for s in campaign.grid.surrogates),
                **{f"env {k}": str(v) for k, v in env.items()},
            }
            html = REPORTS.factory("html")(f"fawkes-eval: {campaign.name}", rows, example_pairs,
                                           context, config=campaign.to_dict(), left_out=left_out)
            atomic_write_text(results_dir / "report.html", html)
            artifacts.append("report.html")
        _say(stream, "\n" + table)
        _say(stream, f"Measured on:\n{measured_on}")
    for name in artifacts:
        logger.log_artifact(parent, results_dir / name)
    for manifest in sorted((results_dir / "manifests").glob("*.json")):
        logger.log_artifact(parent, manifest, "manifests")
    for example in examples:
        logger.log_artifact(parent, results_dir / "examples" / example, "examples")


def _left_out_markdown(left_out: list[dict[str, str]]) -> str:
    if not left_out:
        return ""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = "".join(f"| {' | '.join(cell(e[k]) for k in ('dataset', 'file', 'kind', 'reason'))} |\n" for e in left_out)
    return f"\n## Files left out\n\n| dataset | file | kind | reason |\n|---|---|---|---|\n{lines}"


def run_audit(config: AuditConfig, out_root: Path, stream: TextIO | None = None) -> CampaignOutcome:
    """The flat ``audit`` / ``demo`` options as a one-dataset campaign."""
    return run_campaign(config.to_campaign(), out_root, stream=stream)

