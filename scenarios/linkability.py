"""Linkability (Protego, CVPR 2026, case 2a): can the cloaked photos of one user be matched with each other?

Per protected user, one at a time: each of the user's posted uploads (cloaked; a leak ratio keeps some clean) is a
query against a gallery of the user's *other* uploads and every other identity's photos (plus the extra
distractors of ``distractors: {root: ..., subset: ...}``, as in ``scenarios.search``), by cosine similarity of the
victim's embeddings. Recall@k: one of the user's other uploads is among the first k results (ties go to the
linker). Headline: unlinkability = 1 - recall@1 per cloaked query (True: its nearest photo is not the user's), the
mean over users with a hierarchical bootstrap CI; ``none`` gives the clean linkability of the same photos.

The same-user similarity distribution (every pair of one user's uploads) against impostors (each upload against
every other photo of the gallery) is kept as quantiles in the metrics and as a histogram figure. A user needs two
uploads to be linked; users with fewer are left out and counted. The tracker axis plays no part here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fawkes_eval.types import ReportColumn, ScenarioCell, ScenarioResult
from scenarios.galleries import DistractorSpec, GalleryScenario, hit_at, other_photos, rate_metrics, relevant_ranks

KS = (1, 5, 10)
QUANTILES = (0.1, 0.5, 0.9)
BINS = 40


@dataclass(frozen=True)
class LinkabilityConfig:
    """Options of ``{name: linkability, ...}``: ``distractors`` as in ``search``."""

    distractors: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        DistractorSpec.of(self.distractors)


class Linkability(GalleryScenario):
    """Linkability of a user's cloaked uploads as a campaign scenario (``grid.scenarios: [linkability]``)."""

    name = "linkability"
    headline = "unlinkability"
    columns = (
        ReportColumn("unlinkability", "unlinkability (1 - recall@1) [95% CI]"),
        ReportColumn("recall_at_1", "recall@1"),
        ReportColumn("recall_at_5", "recall@5"),
        ReportColumn("recall_at_10", "recall@10"),
        ReportColumn("same_user_sim_q50", "same-user sim (median)", ".3f"),
        ReportColumn("impostor_sim_q90", "impostor sim (90%)", ".3f"),
        ReportColumn("dssim", "DSSIM", ".4f"),
    )

    def __init__(self, config: LinkabilityConfig | None = None) -> None:
        self.config = config or LinkabilityConfig()
        super().__init__(self.config.distractors)

    def evaluate(self, cell: ScenarioCell) -> ScenarioResult:
        data = cell.data
        posted, uploads, distractors, about_distractors = self.parts(cell)
        ranks: dict[str, list[np.ndarray]] = {}
        same: list[np.ndarray] = []
        impostor: list[np.ndarray] = []
        skipped = []
        for user in data.protected:
            mine = data.split.train[user]
            if len(mine) < 2:
                skipped.append(user)
                continue
            own = np.stack([uploads[i] for i in mine])
            others = np.concatenate([posted[other_photos(data, user)], distractors])
            gallery = np.concatenate([own, others])
            n = len(own)
            ranks[user] = relevant_ranks(own, gallery, [np.delete(np.arange(n), q) for q in range(n)],
                                         exclude=list(range(n)))
            sims = own @ own.T
            same.append(sims[np.triu_indices(n, 1)])
            impostor.append((own @ others.T).ravel())
        if not ranks:
            raise ValueError(f"{data.name}: linkability needs a protected user with at least 2 uploads")

        metrics: dict[str, float] = {}
        unlinked = {u: ~hit_at(r, 1) for u, r in ranks.items()}
        metrics.update(rate_metrics("unlinkability", unlinked, data.seed, cell.n_boot))
        for k in KS:
            metrics.update(rate_metrics(f"recall_at_{k}", {u: hit_at(r, k) for u, r in ranks.items()}, data.seed,
                                        cell.n_boot))
        same_all, impostor_all = np.concatenate(same), np.concatenate(impostor)
        for q in QUANTILES:
            metrics[f"same_user_sim_q{round(q * 100)}"] = float(np.quantile(same_all, q))
            metrics[f"impostor_sim_q{round(q * 100)}"] = float(np.quantile(impostor_all, q))
        metrics["impostor_sim_q99"] = float(np.quantile(impostor_all, 0.99))
        metrics.update(self.bench.cloak_metrics(cell))
        low = float(min(same_all.min(), impostor_all.min()))
        high = float(max(same_all.max(), impostor_all.max()))
        edges = np.linspace(low, high if high > low else low + 1e-6, BINS + 1)
        figure = {"kind": "histogram", "id": "linkability-similarity", "title": "Linkability: cosine similarity",
                  "x_label": "cosine similarity of two posted photos", "edges": [float(e) for e in edges],
                  "series": {"same user (uploads)": np.histogram(same_all, edges)[0].astype(int).tolist(),
                             "impostors": np.histogram(impostor_all, edges)[0].astype(int).tolist()}}
        provenance: dict[str, Any] = {
            "n_queries": sum(len(r) for r in ranks.values()), "users_with_fewer_than_2_uploads": skipped,
            "n_same_user_pairs": len(same_all), "n_impostor_pairs": len(impostor_all), "figures": [figure],
            **about_distractors,
        }
        return ScenarioResult(metrics, {u: float(v.mean()) for u, v in unlinked.items()},
                              {u: [bool(x) for x in v] for u, v in unlinked.items()}, provenance)
