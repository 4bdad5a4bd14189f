"""Result rows: one per cell, carrying the numbers and everything needed to reproduce them.

A row is typed (``CellConfig`` and ``Provenance`` TypedDicts inside a ``ResultRow`` dataclass), versioned
(``schema_version``) and checked against the JSON Schema shipped beside this module
(``schemas/result-row.schema.json``) whenever it is written or read, so a row that reports or the regression gate
would misread is refused where it is made.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

SCHEMA_VERSION = 2
SCHEMA_FILE = Path(__file__).parent / "schemas" / "result-row.schema.json"


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved configuration: the key of a cell."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CellConfig(TypedDict):
    """A cell's resolved configuration; its hash is the cell's key. Component names keep their ``:mode``; the
    options of a grid entry are beside its name (``cloak_options``, ...)."""

    scenario: str
    scenario_options: dict[str, Any]
    dataset: str
    dataset_sha256: str
    alignment: str  # how faces are found: detector:<name> or aligned:<template>
    cloak: str
    cloak_options: dict[str, Any]
    surrogates: str  # comma-separated; empty for cloaks that use none (noise, none, external)
    victim: str
    victim_options: dict[str, Any]
    tracker: str
    tracker_options: dict[str, Any]
    countermeasure: str
    countermeasure_side: str
    leak_ratio: float
    seed: int
    protected: str
    train_fraction: float
    n_boot: int
    topk: int


class Provenance(TypedDict, total=False):
    """What a row was measured on. The runner writes every key; scenarios add their own counts."""

    campaign: str
    dataset: str
    manifest_sha256: str
    n_identities: int
    n_images: int
    n_skipped_photos: int
    n_train: int
    n_queries: int
    protected_users: list[str]
    cloak_params: dict[str, Any]
    targets: dict[str, str]
    victim_sha256: dict[str, str]
    victim_license: str
    victim_family: str
    surrogate_sha256: dict[str, dict[str, str]]
    surrogate_license: dict[str, str]
    environment: dict[str, Any]


@dataclass
class ResultRow:
    """One cell's outcome: its configuration, metrics with CIs, per-user and per-query outcomes, provenance.

    ``outcomes[user]``: per clean test query of that user, in split order, whether the threat model failed on it
    (True = protected); ``headline`` names the metric these make up, ``columns`` what reports show (metric,
    header, format), both from the scenario."""

    cell: CellConfig | dict[str, Any]
    metrics: dict[str, float]
    per_user: dict[str, float] = field(default_factory=dict)
    provenance: Provenance | dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, list[bool]] = field(default_factory=dict)
    headline: str = "psr"
    columns: list[list[str]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> str:
        return config_hash(dict(self.cell))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "key": self.key, "cell": dict(self.cell),
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()}, "per_user": dict(self.per_user),
            "outcomes": {u: list(map(bool, o)) for u, o in self.outcomes.items()}, "headline": self.headline,
            "columns": [list(c) for c in self.columns], "provenance": dict(self.provenance),
        }

    def to_json(self) -> str:
        data = self.to_dict()
        validate_row(data)
        return json.dumps(data, indent=1, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        validate_row(data)
        return cls(
            cell=dict(data["cell"]),
            metrics={k: math.nan if v is None else float(v) for k, v in data["metrics"].items()},
            per_user={k: float(v) for k, v in data.get("per_user", {}).items()},
            provenance=dict(data.get("provenance", {})),
            outcomes={u: [bool(x) for x in o] for u, o in data.get("outcomes", {}).items()},
            headline=str(data.get("headline", "psr")),
            columns=[list(c) for c in data.get("columns", [])],
            schema_version=int(data["schema_version"]),
        )


def _json_number(value: float) -> float | None:
    """NaN and infinities are not JSON: written as null, read back as NaN."""
    return None if not math.isfinite(value) else float(value)


@cache
def row_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


def validate_row(data: Any) -> None:
    """Raise ``ValueError`` naming the first place where ``data`` is not a row of this schema version."""
    import jsonschema

    try:
        jsonschema.validate(data, row_schema())
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "(the row)"
        raise ValueError(f"not a result row of schema version {SCHEMA_VERSION}: {where}: {e.message}") from None


def write_rows(rows: list[ResultRow], path: Path) -> None:
    for row in rows:
        validate_row(row.to_dict())
    path.write_text(json.dumps([r.to_dict() for r in rows], indent=1, default=str))


def read_rows(path: Path) -> list[ResultRow]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable results file ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of result rows")
    try:
        return [ResultRow.from_dict(d) for d in data]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


@dataclass
class ImageExample:
    """A clean/cloaked pair for report image grids."""

    label: str  # e.g. "fawkes-v1.0:mid / Tony_Blair_0003.jpg"
    clean: Any  # uint8 (H, W, 3)
    cloaked: Any  # uint8 (H, W, 3)


@dataclass
class ReportBundle:
    """Everything a report format renders (a format is a function ``bundle -> text`` registered in ``REPORTS``
    with the file it writes, ``file="report.<ext>"``)."""

    title: str
    rows: list[ResultRow]
    examples: list[ImageExample] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)  # errors.json rows: dataset, file, reason, kind
    config: dict[str, Any] = field(default_factory=dict)  # the campaign's resolved configuration
    context: dict[str, str] = field(default_factory=dict)  # further "measured on" lines
