"""Reverse face search (the PimEyes / Clearview threat; OPOM, TPAMI 2022; Protego, CVPR 2026), both directions.

Per protected user, one at a time (the others' photos are clean distractors), by cosine similarity of the victim's
embeddings:

- (a) the user posts cloaked photos: the gallery holds the user's uploads (cloaked; a leak ratio keeps some clean)
  and every other identity's photos; someone searches with each clean test photo of the user. A hit@k is one of
  the user's uploads among the first k results.
- (b) OPOM's direction: each of the user's cloaked uploads is the query; the gallery holds one clean photo of the
  user (their first test photo of the seeded split) and every other identity's photos.

Protection@k = 1 - hit@k for k = 1, 5, 10, and the searcher's mean average precision (mAP), each the mean over
users of the user's mean over queries, with a hierarchical bootstrap CI (users, then queries). The row's headline is
protection@1 of direction (a), with one outcome per clean test query of each user (True: no upload of the user
came first), so the clean baseline (``none``) and ``compare`` pair it query by query. Ties go to the searcher.

An extra distractor dataset (``distractors: {root: ..., subset: ...}``, e.g. all of LFW's 13,233 photos as OPOM
uses) joins both galleries, without the identities of the cell's dataset; it is read lazily and its embeddings go
through the campaign's on-disk cache (``scenarios.galleries``). The tracker axis plays no part here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fawkes_eval.types import ReportColumn, ScenarioCell, ScenarioResult
from scenarios.galleries import (
    DistractorSpec,
    GalleryScenario,
    average_precision,
    curve_figure,
    hit_at,
    other_photos,
    rate_metrics,
    relevant_ranks,
)

KS = (1, 5, 10)  # the protection@k reported as metrics (OPOM's)
CURVE_K = 10  # the protection@k curve runs k = 1..CURVE_K


@dataclass(frozen=True)
class SearchConfig:
    """Options of ``{name: search, ...}``: ``distractors``, an identity-folder dataset of extra distractors as
    ``{root: ROOT:path, subset: ROOT:path}`` (subset optional)."""

    distractors: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        DistractorSpec.of(self.distractors)  # checks the mapping and its paths


class Search(GalleryScenario):
    """Reverse face search in both directions as a campaign scenario (``grid.scenarios: [search]``)."""

    name = "search"
    headline = "a_protection_at_1"
    columns = (
        ReportColumn("a_protection_at_1", "(a) protection@1 [95% CI]"),
        ReportColumn("a_protection_at_5", "(a) @5"),
        ReportColumn("a_protection_at_10", "(a) @10"),
        ReportColumn("a_map", "(a) searcher mAP"),
        ReportColumn("b_protection_at_1", "(b) protection@1 [95% CI]"),
        ReportColumn("b_protection_at_5", "(b) @5"),
        ReportColumn("b_protection_at_10", "(b) @10"),
        ReportColumn("b_map", "(b) searcher mAP"),
        ReportColumn("gallery", "gallery", ".0f"),
        ReportColumn("dssim", "DSSIM", ".4f"),
    )

    def __init__(self, config: SearchConfig | None = None) -> None:
        self.config = config or SearchConfig()
        super().__init__(self.config.distractors)

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        data = cell.data
        posted, uploads, distractors, about_distractors = self.parts(cell)
        probes = self.bench.dataset(cell, "probe")

        ranks: dict[str, dict[str, list[np.ndarray]]] = {"a": {}, "b": {}}
        gallery_size = {}
        for user in data.protected:
            others = posted[other_photos(data, user)]
            mine = data.split.train[user]
            # (a): clean test photos search a gallery of the user's posted uploads + distractors
            gallery_a = np.concatenate([np.stack([uploads[i] for i in mine]), others, distractors])
            queries_a = probes[data.split.test[user]]
            matches = np.arange(len(mine))
            ranks["a"][user] = relevant_ranks(queries_a, gallery_a, [matches] * len(queries_a))
            # (b): each posted upload searches a gallery of one clean photo of the user + distractors
            reference = probes[data.split.test[user][:1]]
            gallery_b = np.concatenate([reference, others, distractors])
            queries_b = np.stack([uploads[i] for i in mine])
            ranks["b"][user] = relevant_ranks(queries_b, gallery_b, [np.array([0])] * len(queries_b))
            gallery_size[user] = len(gallery_a)

        metrics: dict[str, float] = {}
        per_user: dict[str, float] = {}
        outcomes: dict[str, list[bool]] = {}
        curves: dict[str, list[float]] = {}
        for direction, by_user in ranks.items():
            for k in KS:
                protected = {u: ~hit_at(r, k) for u, r in by_user.items()}
                metrics.update(rate_metrics(f"{direction}_protection_at_{k}", protected, data.seed, cell.n_boot))
                if direction == "a" and k == 1:
                    per_user = {u: float(p.mean()) for u, p in protected.items()}
                    outcomes = {u: [bool(x) for x in p] for u, p in protected.items()}
            metrics.update(rate_metrics(f"{direction}_map", {u: average_precision(r) for u, r in by_user.items()},
                                        data.seed, cell.n_boot))
            curves[direction] = [float(np.mean([np.mean(~hit_at(r, k)) for r in by_user.values()]))
                                 for k in range(1, CURVE_K + 1)]
        metrics["gallery"] = float(np.mean(list(gallery_size.values())))
        metrics["distractors"] = float(len(distractors))
        metrics.update(self.bench.cloak_metrics(cell))
        figure = curve_figure(
            "search-protection-at-k", "Reverse face search: protection@k", "k (results looked at)",
            "protection@k (1 - hit@k)", {"(a) cloaked uploads, clean query": curves["a"],
                                         "(b) cloaked query, one clean photo in the gallery": curves["b"]},
            range(1, CURVE_K + 1))
        provenance: dict[str, Any] = {
            "n_queries": sum(len(data.split.test[u]) for u in data.protected),
            "n_queries_b": sum(len(data.split.train[u]) for u in data.protected),
            "gallery_per_user": gallery_size, "figures": [figure], **about_distractors,
        }
        return ScenarioResult(metrics, per_user, outcomes, provenance)
