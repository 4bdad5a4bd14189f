"""The worker side of a campaign: a per-process workspace, the on-disk caches, and the execution of one cell.

A worker (this process, or a Ray worker) keeps models, prepared datasets, cloak generators and scenario objects
between cells (``Workspace``). Executing a cell claims it first (an exclusive lock on ``cells/<key>.lock``, which
the operating system releases if the process dies), so two processes running one campaign never compute the
same cell twice; the finished row is written to ``cells/<key>.json`` (atomically) and logged as a child run.
Costly work is cached on disk by content: aligned faces (``fawkes_eval.align``), cloak outputs and embeddings
(``ArrayStore``), so a rerun with one new cloak computes only that cloak's cells.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fawkes_eval import console
from fawkes_eval.align import FaceAligner, NoFaceError, PhotoFiles, load_photo
from fawkes_eval.cache import ArrayStore, atomic_write_bytes, atomic_write_text, content_digest
from fawkes_eval.campaign import NO_COUNTERMEASURE, Campaign, CampaignError, DatasetSpec, ProtectedSpec
from fawkes_eval.components import (
    DATASET_DETECTOR,
    ROBUST_OPTION,
    ComponentSpec,
    VictimAdaptation,
    build_generator,
    create_component,
    extractor_facts,
    robust_transforms,
    uses_surrogates,
    victim_adaptation,
    victim_detector,
    without_options,
)
from fawkes_eval.data import Dataset, DatasetError, FileError, Split, load_dataset, split_dataset
from fawkes_eval.plan import CellTask, create_scenario
from fawkes_eval.registry import COUNTERMEASURES, EVALUATIONS, EXTRACTORS, TRACKERS
from fawkes_eval.results import ResultRow
from fawkes_eval.rooms import load_rooms
from fawkes_eval.tracking import RunLogger, TrackingUnavailable, environment
from fawkes_eval.types import (
    AdaptedVictims,
    CloakGenerator,
    CloakOutput,
    FeatureExtractor,
    PreparedCloaks,
    PublicPhotos,
    Scenario,
    ScenarioCell,
    ScenarioData,
)

USER_MODEL_HOOK = "recognizers.user_model:register_user_model"  # called once per ``models:`` entry


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


@dataclass(frozen=True)
class Target:
    """The target a targeted cloak chose for one user (as ``attacks`` report it in ``last_targets``)."""

    user: str
    target: str


class CachedCloak:
    """A cloak generator whose outputs are kept on disk, keyed by its name, parameters, surrogate weights, seed,
    the users it was told and the exact input faces (a batch: some cloaks draw per-batch noise, so batches are
    not split). Anything else (``cloaked_photo_for``, ...) is the wrapped generator's."""

    def __init__(self, inner: CloakGenerator, store: ArrayStore, surrogates: Sequence[FeatureExtractor]) -> None:
        self.inner = inner
        self.store = store
        self.name = inner.name
        self.template = inner.template
        self.last_targets: list[Target] = []
        self.identity = json.dumps(
            {"name": inner.name, "params": inner.params(), "surrogates": [_weights_id(s) for s in surrogates]},
            sort_keys=True, default=str,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def params(self) -> dict[str, object]:
        return self.inner.params()

    def cloak(self, faces: np.ndarray, seed: int, users: Sequence[str] | None = None) -> CloakOutput:
        key = content_digest(self.identity, str(seed), json.dumps(list(users or [])), faces)
        hit = self.store.get(key)
        if hit is not None:
            self.last_targets = [Target(str(u), str(t)) for u, t in hit.get("targets", np.zeros((0, 2), str))]
            return CloakOutput(hit["faces"], hit["dssim"], float(hit["seconds"]))
        out = self.inner.cloak(faces, seed, users=users) if users is not None else self.inner.cloak(faces, seed)  # type: ignore[call-arg]
        self.last_targets = [Target(t.user, t.target) for t in getattr(self.inner, "last_targets", [])]
        targets = np.array([[t.user, t.target] for t in self.last_targets], dtype=str).reshape(-1, 2)
        self.store.put(key, {"faces": out.faces, "dssim": out.dssim, "seconds": np.array(out.seconds),
                             "targets": targets})
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


# --- the per-process workspace ----------------------------------------------------------------------------------

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
    # by a victim's own detector (``ExtractorInfo.detector``, where it is not the dataset's): the usable photos in
    # which it finds no face, so that victim embeds the dataset detector's face there (``EmbeddingCache``)
    detector_misses: dict[str, list[str]] = field(default_factory=dict)

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
    """What a process keeps between cells: the aligner, models, prepared datasets, generators, scenarios."""

    def __init__(self, context: RunContext, stream: TextIO | None = None) -> None:
        load_rooms()
        register_user_models(context.campaign)
        self.context = context
        self.stream = stream
        self.aligners: dict[str, FaceAligner] = {}
        self.cloak_store = ArrayStore(context.cache_dir, "cloaks")
        self.embedding_store = ArrayStore(context.cache_dir, "embeddings")
        self.models: dict[str, FeatureExtractor] = {}
        self.data: dict[str, PreparedData] = {}
        self.generators: dict[str, CachedCloak] = {}
        self.scenarios: dict[str, Scenario] = {}
        self.prepared_cloaks: dict[str, PreparedCloaks] = {}  # by group key
        self.adapted_store = ArrayStore(context.cache_dir, "adapted-victims")
        self.adapted: dict[str, AdaptedVictims] = {}  # adaptive victims, by victim entry, cloak, seed, users
        self.environment = environment()  # library versions, device and git revision, recorded with every row

    def aligner(self, dataset: str) -> FaceAligner:
        """The dataset's aligner: its detector, or its photos taken as crops on its pre-aligned template."""
        if dataset not in self.aligners:
            spec = self.context.campaign.dataset(dataset)
            self.aligners[dataset] = FaceAligner(cache_dir=self.context.cache_dir, detector=spec.detector,
                                                 aligned=spec.aligned)
        return self.aligners[dataset]

    def say(self, message: str) -> None:
        if self.stream is not None:
            console.say(self.stream, message)

    def model(self, name: str) -> FeatureExtractor:
        if name not in self.models:
            self.say(f"loading {name}")
            self.models[name] = CachedExtractor(EXTRACTORS.create(name), self.embedding_store)
        return self.models[name]

    def victim(self, spec: ComponentSpec) -> FeatureExtractor:
        """A victim entry's model, re-detecting photos with the detector the entry resolves to (``victim_detector``):
        the model itself, or, where the entry's ``detector`` option overrides what the model declares, the model
        under a name that says so (in-memory embedding caches are kept by name; crops still share the disk cache)."""
        model = self.model(spec.name)
        detector = victim_detector(spec, model.info.detector)
        if detector == model.info.detector:
            return model
        label = f"{spec.name}[detector={detector or DATASET_DETECTOR}]"
        if label not in self.models:
            inner = model.inner if isinstance(model, CachedExtractor) else model
            renamed = CachedExtractor(inner, self.embedding_store)
            renamed.info = replace(model.info, name=label, detector=detector)
            self.models[label] = renamed
        return self.models[label]

    def prepared(self, name: str, spec: DatasetSpec | None = None) -> PreparedData:
        """A campaign dataset's usable photos (or ``spec``'s, for photos outside ``datasets:``), checked once."""
        if name not in self.data:
            spec = spec or self.context.campaign.dataset(name)
            dataset = load_dataset(spec.root, spec.subset, spec.name)
            sources, identities, skipped = [], [], list(dataset.errors)
            own = self._victim_alignments(name)
            misses: dict[str, set[str]] = {aligner.detector.name: set() for aligner, _ in own}
            for record in console.progress(dataset.records, f"checking photos of {name}", unit="photo"):
                source = str(record.path)
                try:
                    photo = load_photo(record.path)
                    for template in self.context.templates:
                        self.aligner(name).align(photo, template, source)
                except (NoFaceError, OSError, ValueError) as e:
                    # the messages of load_photo and the aligner start with the file's path
                    reason = str(e).removeprefix(f"{source}: ")
                    skipped.append(FileError(source, reason, "no-face" if isinstance(e, NoFaceError) else "unreadable"))
                    self.say(f"skipped {source}: {reason}")
                    continue
                sources.append(source)
                identities.append(record.identity)
                for aligner, template in own:  # a victim's own detector: its misses fall back, they are not skipped
                    try:
                        aligner.align(photo, template, source)
                    except NoFaceError:
                        misses[aligner.detector.name].add(source)
            self.data[name] = PreparedData(dataset, PhotoFiles(sources), sources, identities, skipped,
                                           detector_misses={d: sorted(m) for d, m in misses.items()})
        return self.data[name]

    def _victim_alignments(self, dataset: str) -> list[tuple[FaceAligner, str]]:
        """The (aligner, template) pairs of the campaign's victims that detect with their own detector on
        ``dataset`` (none when it is pre-aligned or no victim declares another detector than its own)."""
        pairs: dict[tuple[str, str], tuple[FaceAligner, str]] = {}
        for spec in self.context.campaign.grid.victims:
            info = self.victim(spec).info
            aligner = self.aligner(dataset).for_detector(info.detector)
            if aligner is not self.aligner(dataset):
                pairs.setdefault((aligner.detector.name, info.template), (aligner, info.template))
        return list(pairs.values())

    def scenario_data(self, task: CellTask) -> ScenarioData:
        cell = task.cell
        data = self.prepared(cell.dataset)
        split = data.split(cell.seed, self.context.campaign.protocol.train_fraction)
        protected = tuple(data.protected(self.context.campaign.protected, cell.seed))
        return ScenarioData(cell.dataset, data.photos, data.sources, data.identities, split, protected, cell.seed,
                            self.aligner(cell.dataset))

    def generator(self, task: CellTask) -> CachedCloak:
        """The cell's cloak, built from its entry (``build_generator``). A surrogate-free control works on the
        template of the campaign's first surrogate, as the cloaks it is compared with do."""
        cell = task.cell
        label = f"{cell.dataset}: {cell.cloak.label} via {','.join(cell.surrogates)}"
        if label not in self.generators:
            models = [self.model(s) for s in cell.surrogates]
            template = None if models else extractor_facts(self.context.campaign.grid.surrogates[0][0]).template
            inner = build_generator(cell.cloak.name, cell.cloak.options_dict(), surrogates=models, template=template,
                                    aligner=self.aligner(cell.dataset))
            self.generators[label] = CachedCloak(inner, self.cloak_store, models)
        return self.generators[label]

    def public_photos(self, task: CellTask, options: VictimAdaptation, protected: Sequence[str]) -> PublicPhotos:
        """An adaptive victim's public photos (a campaign dataset, or ``{root, subset}`` aligned like the cell's
        dataset), without the cell's protected users: an identity of that name is dropped and recorded."""
        if isinstance(options.public, str):
            name, aligner_of = options.public, options.public
            data = self.prepared(name)
            description: dict[str, Any] = {"dataset": name}
        else:
            root, subset = Path(options.public["root"]), options.public.get("subset")
            name = "public-" + content_digest(str(root), str(subset))[:12]
            aligner_of = task.cell.dataset
            self.aligners.setdefault(name, self.aligner(aligner_of))
            data = self.prepared(name, DatasetSpec(name, root, Path(subset) if subset else None))
            description = {"root": str(root), "subset": subset}
        keep = [i for i, identity in enumerate(data.identities) if identity not in protected]
        description.update(manifest_sha256=data.dataset.manifest_hash(), aligned_like=aligner_of,
                           dropped_protected=sorted(set(data.identities) & set(protected)))
        return PublicPhotos(PhotoFiles([data.sources[i] for i in keep]), [data.sources[i] for i in keep],
                            [data.identities[i] for i in keep], description)

    def adapted_victims(self, task: CellTask, options: VictimAdaptation) -> AdaptedVictims:
        """The cell's victim adapted to its cloak (``adapt:``), and the control; kept on disk by content."""
        data = self.scenario_data(task)
        generator = self.generator(task)
        label = json.dumps([task.cell.victim.label, task.cell.dataset, generator.identity, data.seed,
                            list(data.protected)])
        if label not in self.adapted:
            base = self.victim(task.cell.victim)
            if not base.info.differentiable:
                raise ValueError(f"victim {base.info.name} is not differentiable: adapt needs a network to fine-tune")
            self.say(f"adapting {base.info.name} to {task.cell.cloak.label} ({options.adapt}) ...")
            adapt = EVALUATIONS.factory(options.adapt)
            public = self.public_photos(task, options, data.protected)
            victims: AdaptedVictims = adapt(base, generator, self.aligner(public.description["aligned_like"]), public,
                                            options, data.seed, store=self.adapted_store, identity=generator.identity)
            self.adapted[label] = victims
        return self.adapted[label]

    def scenario(self, task: CellTask) -> Scenario:
        label = task.cell.scenario.label
        if label not in self.scenarios:
            self.scenarios[label] = create_scenario(task.cell)
        return self.scenarios[label]

    def prepare(self, task: CellTask) -> PreparedCloaks:
        """The step a group of cells shares (cloaking what its scenario uploads), once per group and process."""
        if task.group not in self.prepared_cloaks:
            data = self.scenario_data(task)
            generator = self.generator(task)
            self.say(f"cloaking with {task.cell.cloak.label} for {task.cell.scenario.label} (seed {task.cell.seed}, "
                     f"protecting {', '.join(data.protected)}) ...")
            prepared = self.scenario(task).prepare(data, generator, task.cell.leak_ratio)
            if self.context.campaign.outputs.examples:  # false: faces stay out of the reports
                _write_example(self.context.results_dir / "examples", task, prepared)
            self.prepared_cloaks[task.group] = prepared
        return self.prepared_cloaks[task.group]


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


def drop_workspaces() -> None:
    _WORKSPACES.clear()


def _write_example(folder: Path, task: CellTask, prepared: PreparedCloaks) -> None:
    """One clean / cloaked face crop per cloaking run, for the report's image grid (``reports.examples`` layout;
    ``<group>.json`` holds the label until the driver writes the ``examples.json`` index)."""
    meta = folder / f"{task.group}.json"
    if meta.exists() or prepared.example is None:
        return
    from PIL import Image

    example = prepared.example
    for kind, pixels in (("clean", example.clean), ("cloaked", example.cloaked)):
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        atomic_write_bytes(folder / f"{task.group}.{kind}.png", png.getvalue())
    atomic_write_text(meta, json.dumps({
        "label": f"{task.cell.cloak.label} / {Path(example.source).name}",
        "clean": f"{task.group}.clean.png", "cloaked": f"{task.group}.cloaked.png",
    }))


# --- one cell ----------------------------------------------------------------------------------------------------

class CellClaimed(RuntimeError):
    """Another process holds this cell's claim: it is computing it now."""


class CellDoneElsewhere(RuntimeError):
    """Another process finished this cell between planning and claiming; ``row`` is its result."""

    def __init__(self, row: ResultRow) -> None:
        super().__init__(f"cell {row.key} was computed by another process")
        self.row = row


@contextmanager
def claim(results_dir: Path, key: str, wait: bool = False) -> Iterator[None]:
    """Hold the exclusive claim on cell ``key`` (``cells/<key>.lock``) for the ``with`` block. Raises
    ``CellClaimed`` if another process holds it (unless ``wait``). The lock dies with its process."""
    path = results_dir / "cells" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CellClaimed(f"cell {key} is being computed by another process") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prepare_group(task: CellTask, context: RunContext) -> None:
    """The Ray executor's group task: cloak the group's photos (and fill the on-disk cache) unless its cells are
    done or claimed elsewhere."""
    if read_cell(context.results_dir, task.key) is None:
        workspace(context).prepare(task)


_GAVE_UP_LOGGING: set[str] = set()  # tracking URIs this process waited out: later cells do not wait again


def execute_cell(task: CellTask, context: RunContext) -> ResultRow:
    """Claim one cell, compute it, write it to ``cells/<key>.json`` and log it under the parent run.

    A cell finished meanwhile by another process is read, not computed (``CellDoneElsewhere``). A tracking
    server that stays down past its patience costs the logging, not the result: the row is on disk, the rest of
    the campaign runs without waiting again, and the driver (or a rerun) logs what is missing."""
    with claim(context.results_dir, task.key):
        done = read_cell(context.results_dir, task.key)
        if done is not None:
            raise CellDoneElsewhere(done)
        ws = workspace(context)
        row = compute_cell(task, context, ws)
        write_cell(context.results_dir, row)
    if context.tracking_uri not in _GAVE_UP_LOGGING:
        try:
            RunLogger(context.campaign.study, context.tracking_uri).log_cell(context.parent_run_id, row, cell_tags(row))
        except TrackingUnavailable as e:
            _GAVE_UP_LOGGING.add(context.tracking_uri)
            ws.say(f"not logged to MLflow (saved in {context.results_dir / 'cells'}; a rerun logs it): {e}")
    return row


def reset_logging_patience() -> None:
    _GAVE_UP_LOGGING.clear()


def _tracker_factory(task: CellTask) -> Callable[[], Any]:
    spec = without_options(task.cell.tracker, ROBUST_OPTION)  # robust training is the scenario's (augmentations)
    return lambda: create_component(TRACKERS, spec)


def compute_cell(task: CellTask, context: RunContext, ws: Workspace) -> ResultRow:
    cell = task.cell
    prepared = ws.prepare(task)
    data = ws.scenario_data(task)
    victim: FeatureExtractor = ws.victim(cell.victim)
    victim_aligner = data.aligner.for_detector(victim.info.detector)
    adaptation = victim_adaptation(cell.victim)
    adapted = None if adaptation is None else ws.adapted_victims(task, adaptation)
    if adapted is not None:
        victim = CachedExtractor(adapted.adapted, ws.embedding_store)
    countermeasure = None if cell.countermeasure.name == NO_COUNTERMEASURE else create_component(
        COUNTERMEASURES, cell.countermeasure)
    scenario = ws.scenario(task)
    generator = ws.generator(task)
    p = context.campaign.protocol
    augmentations = tuple(COUNTERMEASURES.create(name) for name in robust_transforms(cell.tracker))
    scenario_cell = ScenarioCell(
        data, generator, victim, _tracker_factory(task), countermeasure, p.countermeasure_side, cell.leak_ratio,
        p.n_boot, p.topk, augmentations,
    )
    result = scenario.evaluate(scenario_cell)
    metrics = {k: float(v) for k, v in result.metrics.items()}
    adaptation_record: dict[str, Any] = {}
    if adapted is not None:
        # the control: the same fine-tune on the clean public photos only, through the same scenario
        control = scenario.evaluate(replace(scenario_cell, victim=CachedExtractor(adapted.control, ws.embedding_store)))
        metrics.update({f"control_{k}": float(v) for k, v in control.metrics.items()})
        adaptation_record = {"adaptation": {**adapted.record, "control_per_user": dict(control.per_user)}}
    prepared_data = ws.prepared(cell.dataset)
    surrogates = [ws.model(s) for s in cell.surrogates]
    provenance: dict[str, Any] = {
        "campaign": context.campaign.name, "scenario": scenario.name,
        "dataset": prepared_data.dataset.name, "manifest_sha256": prepared_data.dataset.manifest_hash(),
        "n_identities": len(set(prepared_data.identities)), "n_images": len(prepared_data.photos),
        "n_skipped_photos": len(prepared_data.skipped), "protected_users": list(data.protected),
        "alignment": data.aligner.provenance(),
        "cloak_params": generator.params(), "targets": dict(prepared.targets),
        "uses_surrogates": uses_surrogates(cell.cloak.name),
        "victim_sha256": victim.info.weight_sha256, "victim_license": victim.info.license,
        "victim_family": victim.info.family,
        # the detector the victim re-detected every photo with (None: pre-aligned), and how many of the dataset's
        # usable photos it found no face in, where it used the dataset detector's face instead
        "victim_detector": victim_aligner.provenance()["detector"],
        "victim_detector_fallbacks": 0 if victim_aligner is data.aligner else len(
            prepared_data.detector_misses.get(victim_aligner.detector.name, [])),
        "surrogate_sha256": {s.info.name: s.info.weight_sha256 for s in surrogates},
        "surrogate_license": {s.info.name: s.info.license for s in surrogates},
        **dict(prepared.notes), **dict(result.provenance), **adaptation_record, "environment": ws.environment,
    }
    return ResultRow(
        cell=dict(task.config), metrics=metrics,
        per_user={k: float(v) for k, v in result.per_user.items()}, provenance=provenance,
        outcomes={u: [bool(x) for x in o] for u, o in result.outcomes.items()}, headline=scenario.headline,
        columns=[[c.metric, c.header, c.format] for c in scenario.columns],
    )


def _compact_hashes(hashes: Any) -> str:
    return ",".join(f"{k}={v[:12]}" for k, v in sorted(dict(hashes).items()))


def cell_tags(row: ResultRow) -> dict[str, str]:
    """MLflow tags of a cell beyond its configuration: versions, model hashes and licenses (from provenance)."""
    p = row.provenance
    env = p.get("environment", {})
    return {
        "fe.git": str(env.get("git", "unknown")), "fe.fawkes_eval": str(env.get("fawkes_eval", "")),
        "fe.torch": str(env.get("torch", "")), "fe.device": str(env.get("device", "")),
        "fe.schema_version": str(row.schema_version),
        "fe.cloak_params": json.dumps(p.get("cloak_params", {}), sort_keys=True, default=str),
        "fe.victim_sha256": _compact_hashes(p.get("victim_sha256", {})),
        "fe.victim_license": str(p.get("victim_license", "")),
        "fe.surrogate_sha256": "; ".join(f"{name}: {_compact_hashes(h)}"
                                         for name, h in sorted(p.get("surrogate_sha256", {}).items())),
        "fe.surrogate_license": "; ".join(f"{name}: {lic}" for name, lic in sorted(p.get("surrogate_license", {}).items())),
        "fe.protected_users": ",".join(p.get("protected_users", [])),
    }


def write_cell(results_dir: Path, row: ResultRow) -> None:
    atomic_write_text(results_dir / "cells" / f"{row.key}.json", row.to_json())


def read_cell(results_dir: Path, key: str) -> ResultRow | None:
    """A finished cell's row, or None (absent, or not a readable row of this schema with this key)."""
    path = results_dir / "cells" / f"{key}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        row = ResultRow.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return row if row.key == key else None
