"""What the search, linkability and verification scenarios share: one cloaking run per group, embeddings of the
cell's photos as posted online or as a searcher holds them, an extra distractor gallery read lazily, and ranks in a
gallery computed in chunks.

Every photo of these threat models is either *posted* (on a platform, where a crawler or search engine finds it:
the protected user's uploads, cloaked, and everyone else's photos) or a *probe* (the photo a searcher or verifier
brings: a clean photo of the user). A countermeasure on ``uploads`` transforms the posted photos, on ``queries``
the probes (``both``: all). The cloaked uploads are the protected users' training photos of the seeded split, made
by ``scenarios.protection.Protection.prepare``, so a campaign's scenarios share one cloaking run through the cloak
cache; a leak ratio keeps the same uploads clean as the protection scenario does.

Extra distractors (``DistractorSpec``): another identity-folder dataset whose photos join every gallery. Identities
of the cell's dataset are left out of it (the protected users must be, and the others' photos are in the gallery
already), so no photo counts twice. Photos are decoded one at a time, embedded 256 at a time through the cell's
victim (the campaign's on-disk embedding cache) and kept as embeddings only; photos without a face are left out
and counted. Similarities are computed ``CHUNK`` queries at a time, so memory is the gallery's embeddings plus one
chunk's similarity row block, whatever the gallery's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fawkes_eval.align import PhotoFiles
from fawkes_eval.data import DatasetError, Split, load_dataset
from fawkes_eval.metrics import RateCI, hierarchical_bootstrap
from fawkes_eval.types import CellCost, CloakGenerator, PreparedCloaks, ScenarioCell, ScenarioData
from scenarios.photos import CloakedPhoto, EmbeddingCache, cloak_metrics
from scenarios.protection import Protection, ProtectionBench, Transformed

CHUNK = 256  # queries per similarity block: memory is CHUNK x gallery floats


@dataclass(frozen=True)
class DistractorSpec:
    """An identity-folder dataset (``root/<identity>/<image>``, optionally a ``subset`` list) of extra distractors."""

    root: str
    subset: str | None = None

    @classmethod
    def of(cls, value: Mapping[str, Any] | None, option: str = "distractors") -> DistractorSpec | None:
        """From a campaign option ``{root: ..., subset: ...}``; None stays None."""
        if value is None:
            return None
        if not isinstance(value, Mapping) or "root" not in value:
            raise ValueError(f"{option}: expected a mapping {{root: ROOT:path, subset: ROOT:path}}, got {value!r}")
        unknown = sorted(set(value) - {"root", "subset"})
        if unknown:
            raise ValueError(f"{option}: unknown key(s) {', '.join(unknown)}; allowed: root, subset")
        spec = cls(str(value["root"]), None if value.get("subset") is None else str(value["subset"]))
        if not Path(spec.root).is_dir():
            raise ValueError(f"{option}.root: {spec.root} is not a directory")
        if spec.subset is not None and not Path(spec.subset).is_file():
            raise ValueError(f"{option}.subset: {spec.subset} is not a file")
        return spec

    def files(self) -> int:
        """How many photos it lists (for cost estimates; nothing is decoded)."""
        return len(load_dataset(self.root, self.subset).records)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def leaked_uploads(split: Split, protected: Sequence[str], user: str, seed: int, ratio: float) -> set[int]:
    """The uploads of ``user`` left clean at a leak ratio: the same draw as the protection protocol's
    (``scenarios.protection.evaluate_protection``: generator seeded with (seed, the user's position))."""
    uploads = split.train[user]
    rng = np.random.default_rng([seed, list(protected).index(user)])
    return {int(i) for i in rng.choice(uploads, size=int(round(ratio * len(uploads))), replace=False)}


def relevant_ranks(
    queries: np.ndarray, gallery: np.ndarray, relevant: Sequence[np.ndarray], exclude: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """For each query, the 1-based rank of each of its relevant gallery items, sorted (best first).

    ``queries`` (Q, D) and ``gallery`` (G, D) are unit vectors; ``relevant[q]``: gallery positions of query q's
    matches; ``exclude[q]``: a gallery position query q may not find (itself), or -1. Ties go to the searcher: a
    non-matching item as similar as a match ranks above it (the protection measured is never flattered)."""
    out: list[np.ndarray] = []
    for first in range(0, len(queries), CHUNK):
        sims = queries[first:first + CHUNK] @ gallery.T
        for row, q in enumerate(range(first, min(first + CHUNK, len(queries)))):
            s = sims[row]
            rel = np.asarray(relevant[q], dtype=int)
            others = np.ones(len(s), bool)
            others[rel] = False
            if exclude is not None and exclude[q] >= 0:
                others[exclude[q]] = False
            s_rel = s[rel]
            ahead = (s[others][None, :] >= s_rel[:, None]).sum(axis=1) + (s_rel[None, :] > s_rel[:, None]).sum(axis=1)
            out.append(np.sort(ahead + 1))
    return out


def hit_at(ranks: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Per query: whether a match is among the first ``k`` results."""
    return np.array([len(r) > 0 and r[0] <= k for r in ranks], dtype=bool)


def average_precision(ranks: Sequence[np.ndarray]) -> np.ndarray:
    """Per query: the mean, over its matches, of the precision at each match's rank."""
    return np.array([float(np.mean(np.arange(1, len(r) + 1) / r)) if len(r) else 0.0 for r in ranks])


def rate_metrics(name: str, per_user: Mapping[str, np.ndarray], seed: int, n_boot: int) -> dict[str, float]:
    """``name`` and its CI: the mean over users of each user's mean (a hierarchical bootstrap over users, queries)."""
    ci: RateCI = hierarchical_bootstrap([np.asarray(v, float) for v in per_user.values()], seed=seed, n_boot=n_boot)
    return {name: ci.value, f"{name}_ci_low": ci.low, f"{name}_ci_high": ci.high}


def curve_figure(fig_id: str, title: str, x_label: str, y_label: str, series: Mapping[str, Sequence[float]],
                 x: Sequence[float], x_log: bool = False, marks: Mapping[str, Sequence[float]] | None = None
                 ) -> dict[str, Any]:
    """A ``curve`` figure as reports draw them (HELPERS convention: ``provenance["figures"]``)."""
    return {"kind": "curve", "id": fig_id, "title": title, "x_label": x_label, "y_label": y_label, "x_log": x_log,
            "series": {label: {"x": [float(v) for v in x], "y": [float(v) for v in y]} for label, y in series.items()},
            "marks": {label: [float(v) for v in xy] for label, xy in (marks or {}).items()}}


@dataclass
class Distractors:
    """An extra distractor gallery as one victim embeds it (after one countermeasure, or none)."""

    embeddings: np.ndarray  # unit (M, D)
    n_files: int
    n_without_face: int
    provenance: dict[str, Any] = field(default_factory=dict)


class GalleryBench:
    """Embeddings the gallery scenarios reuse across their cells: the cell dataset's photos and the cloaked uploads
    per (victim, countermeasure, role), the distractor gallery per (victim, countermeasure). The cloaking run is the
    protection scenario's (``Protection.prepare``), shared through the on-disk cloak cache."""

    def __init__(self, distractors: DistractorSpec | None = None) -> None:
        self.protection = Protection()
        self.distractor_spec = distractors
        self._dataset: dict[tuple[str, str, str], np.ndarray] = {}
        self._cloaked: dict[tuple[Any, ...], dict[int, np.ndarray]] = {}
        self._distractors: dict[tuple[str, str], Distractors] = {}
        self._distractor_files: int | None = None

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks:
        return self.protection.prepare(data, generator, leak_ratio)

    def uploads(self, cell: ScenarioCell) -> tuple[dict[int, CloakedPhoto], float]:
        """The protected users' cloaked uploads by record index, and the cloak's seconds."""
        data = cell.data
        return self.protection.bench(data).cloak_users(cell.generator, data.split, list(data.protected), data.seed)

    def cloak_metrics(self, cell: ScenarioCell) -> dict[str, float]:
        cloaked, seconds = self.uploads(cell)
        return cloak_metrics(list(cloaked.values()), seconds)

    def embedder(self, cell: ScenarioCell) -> EmbeddingCache:
        """The cell victim's in-memory embeddings by pixel content (over the campaign's on-disk cache)."""
        return self.protection.bench(cell.data).embedder(cell.victim)

    @staticmethod
    def _transform(cell: ScenarioCell, role: str) -> Any:
        sides = {"posted": ("uploads", "both"), "probe": ("queries", "both"), "clean": ()}[role]
        return cell.countermeasure if cell.countermeasure is not None and cell.side in sides else None

    @staticmethod
    def _key(cell: ScenarioCell, transform: Any) -> tuple[str, str]:
        return cell.victim.info.name, "none" if transform is None else transform.name

    def dataset(self, cell: ScenarioCell, role: str) -> np.ndarray:
        """Unit embeddings of every photo of the cell's dataset, as posted, as a probe or untransformed (``role``:
        posted, probe, clean)."""
        transform = self._transform(cell, role)
        key = (cell.data.name, *self._key(cell, transform))
        if key not in self._dataset:
            data = cell.data
            photos = data.photos if transform is None else Transformed(data.photos, transform, data.seed)
            fallbacks = None if transform is None else data.photos
            self._dataset[key] = unit(self.embedder(cell).embed(photos, data.sources, fallbacks))
        return self._dataset[key]

    def posted_uploads(self, cell: ScenarioCell) -> dict[int, np.ndarray]:
        """Unit embeddings of each protected user's uploads as posted: cloaked, except those a leak keeps clean."""
        transform = self._transform(cell, "posted")
        data = cell.data
        run = ProtectionBench.run_key(cell.generator, data.seed, data.protected)
        key = (data.name, *self._key(cell, transform), *run[:3], str(cell.leak_ratio))
        if key not in self._cloaked:
            cloaked, _ = self.uploads(cell)
            clean = self.dataset(cell, "posted")
            out: dict[int, np.ndarray] = {}
            order = sorted(cloaked)
            if order:
                photos = [cloaked[i].photo for i in order]
                if transform is not None:
                    photos = transform.apply(photos, data.seed)
                vectors = unit(self.embedder(cell).embed(photos, [cloaked[i].source for i in order],
                                                       [data.photos[i] for i in order]))
                out = dict(zip(order, vectors, strict=True))
            for user in data.protected:
                for i in leaked_uploads(data.split, data.protected, user, data.seed, cell.leak_ratio):
                    out[i] = clean[i]
                for i in data.split.train[user]:
                    out.setdefault(i, clean[i])  # a photo another tool left without a cloaked copy stays clean
            self._cloaked[key] = out
        return self._cloaked[key]

    def distractors(self, cell: ScenarioCell) -> Distractors | None:
        """The extra distractor gallery as posted (identities of the cell's dataset left out), or None."""
        spec = self.distractor_spec
        if spec is None:
            return None
        transform = self._transform(cell, "posted")
        key = self._key(cell, transform)
        if key not in self._distractors:
            try:
                dataset = load_dataset(spec.root, spec.subset, "distractors")
            except DatasetError as e:
                raise DatasetError(f"distractors: {e}") from None
            mine = set(cell.data.identities)
            records = [r for r in dataset.records if r.identity not in mine]
            sources = [str(r.path) for r in records]
            photos: Any = PhotoFiles(sources)
            if transform is not None:
                photos = Transformed(photos, transform, cell.data.seed)
            vectors, found = self.embedder(cell).embed_found(photos, sources)
            self._distractors[key] = Distractors(
                unit(vectors), len(records), len(records) - len(found),
                {"distractors_root": spec.root, "distractors_subset": spec.subset,
                 "distractors_manifest_sha256": dataset.manifest_hash(),
                 "distractors_identities": len({records[i].identity for i in found}),
                 "distractors_excluded_identities": len({r.identity for r in dataset.records} & mine),
                 "distractors_refused_files": len(dataset.errors)})
        return self._distractors[key]

    def cost(self, n_images: int, n_protected_train: int) -> CellCost:
        if self._distractor_files is None:
            self._distractor_files = self.distractor_spec.files() if self.distractor_spec is not None else 0
        extra = self._distractor_files
        return CellCost(photos_to_cloak=n_protected_train, photos_to_embed=n_images + n_protected_train + extra)


class GalleryScenario:
    """What ``search`` and ``linkability`` share: a bench over their optional extra distractors, the cloaking run,
    the cost, and a cell's gallery parts."""

    def __init__(self, distractors: Mapping[str, Any] | None) -> None:
        self.bench = GalleryBench(DistractorSpec.of(distractors))

    def prepare(self, data: ScenarioData, generator: CloakGenerator, leak_ratio: float) -> PreparedCloaks:
        return self.bench.prepare(data, generator, leak_ratio)

    def cost(self, n_images: int, n_protected_train: int, n_protected_test: int) -> CellCost:
        return self.bench.cost(n_images, n_protected_train)

    def parts(self, cell: ScenarioCell) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray, dict[str, Any]]:
        """The dataset's photos as posted, the uploads as posted, the extra distractors (unit rows; none: zero rows)
        and what the provenance says about them."""
        posted = self.bench.dataset(cell, "posted")
        extra = self.bench.distractors(cell)
        if extra is None:
            return posted, self.bench.posted_uploads(cell), np.zeros((0, posted.shape[1]), np.float32), {}
        return posted, self.bench.posted_uploads(cell), extra.embeddings, {
            **extra.provenance, "distractors_files": extra.n_files, "distractors_without_face": extra.n_without_face}


def other_photos(data: ScenarioData, user: str) -> np.ndarray:
    """Record indices of every photo of the other identities (the other protected users' photos clean: one user is
    evaluated at a time, as in the protection protocol)."""
    return np.array([i for i, identity in enumerate(data.identities) if identity != user], dtype=int)
