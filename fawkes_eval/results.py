"""Result rows: one per cell, carrying the numbers and everything needed to reproduce them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved configuration: the key of a cell."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class ResultRow:
    """One cell's outcome: components, metrics with CIs, and provenance."""

    cell: dict[str, Any]  # cloak, surrogates, victim, tracker, scenario, countermeasure, seed, ...
    metrics: dict[str, float]  # psr, psr_ci_low, psr_ci_high, others_acc, top5, dssim, psnr, sec_per_image
    per_user: dict[str, float] = field(default_factory=dict)  # PSR per protected user
    provenance: dict[str, Any] = field(default_factory=dict)  # dataset, manifest hash, models, versions, seed

    @property
    def key(self) -> str:
        return config_hash(self.cell)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        return cls(
            cell=dict(data["cell"]),
            metrics={k: float(v) for k, v in data["metrics"].items()},
            per_user={k: float(v) for k, v in data.get("per_user", {}).items()},
            provenance=dict(data.get("provenance", {})),
        )


def write_rows(rows: list[ResultRow], path: Path) -> None:
    path.write_text(json.dumps([r.to_dict() for r in rows], indent=1, default=str))


def read_rows(path: Path) -> list[ResultRow]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable results file ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of result rows")
    return [ResultRow.from_dict(d) for d in data]


@dataclass
class ImageExample:
    """A clean/cloaked pair for report image grids."""

    label: str  # e.g. "fawkes-v1.0:mid / Tony_Blair_0003.jpg"
    clean: Any  # uint8 (H, W, 3)
    cloaked: Any  # uint8 (H, W, 3)
