"""What the numbers were measured on, gathered from the rows' provenance: datasets, models, environments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fawkes_eval.results import ResultRow


def _distinct(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
    return list(seen.values())


def datasets(rows: Sequence[ResultRow]) -> list[dict[str, Any]]:
    """One entry per distinct dataset and protected-user set: name, manifest hash, sizes, protected users."""
    return _distinct([
        {
            "dataset": r.provenance.get("dataset", "?"),
            "manifest_sha256": r.provenance.get("manifest_sha256", "?"),
            "identities": r.provenance.get("n_identities", "?"),
            "images": r.provenance.get("n_images", "?"),
            "protected_users": ", ".join(map(str, r.provenance.get("protected_users", []))),
            "seed": r.cell.get("seed", "?"),
        }
        for r in rows
    ])


def models(rows: Sequence[ResultRow]) -> list[dict[str, Any]]:
    """The victims the trackers were built on, with their weight hashes and licenses."""
    return sorted(
        _distinct([
            {
                "model": str(r.cell.get("victim", "?")),
                "family": str(r.provenance.get("victim_family", "")),
                "license": str(r.provenance.get("victim_license", "")),
                "weights": ", ".join(
                    f"{name} sha256 {digest}" for name, digest in sorted(r.provenance.get("victim_sha256", {}).items())
                ),
            }
            for r in rows
        ]),
        key=lambda m: str(m["model"]),
    )


def environments(rows: Sequence[ResultRow]) -> list[dict[str, str]]:
    """Distinct library versions and hardware the rows were computed with (more than one is worth seeing)."""
    return _distinct([{str(k): str(v) for k, v in r.provenance.get("environment", {}).items()} for r in rows])


def environment_summary(rows: Sequence[ResultRow]) -> dict[str, str]:
    """The environment once: each key with its value, or its distinct values joined by "; " where the cells were
    computed in more than one environment (a resumed campaign on another revision, say)."""
    out: dict[str, list[str]] = {}
    for env in environments(rows):
        for key, value in env.items():
            if value not in out.setdefault(key, []):
                out[key].append(value)
    return {key: "; ".join(values) for key, values in out.items()}
