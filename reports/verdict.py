"""The verdict at the top of a report: one plain sentence per cloak saying against which threat models its protection
is above the clean baseline and against which it is not.

A threat model is everything of a cell but the cloak: scenario, victim, tracker, countermeasure and the side it
acts on, leak ratio, dataset and seed (only the parts that vary are named). "Above the clean baseline" means the
95% CI of the headline above the ``none`` cloak's (``fawkes_eval.baselines``: paired over the same users and
queries) lies entirely above zero; where that interval reaches zero the cell shows no protection, and where the
campaign ran no ``none`` cloak for that threat model there is nothing to compare with, which the sentence says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fawkes_eval.baselines import BASELINE_CLOAK, above_baseline_keys
from fawkes_eval.campaign import NO_TRACKER
from fawkes_eval.components import ADAPT_OPTIONS, ROBUST_OPTION, ComponentSpec
from fawkes_eval.results import ResultRow
from reports.cells import NO_COUNTERMEASURE, axis_value, finite, sort_rows, varying_axes

# the parts of a cell that make its threat model, in the order a sentence names them
THREAT_AXES = ("scenario", "victim", "victim_options", "tracker", "tracker_options", "countermeasure", "leak_ratio",
               "dataset", "seed")


def cloak_label(row: ResultRow) -> str:
    """The cloak of a row as its grid entry reads (options included), with its surrogates: ``fawkes-v1.0:high via
    dlib-resnet-torch``."""
    options = row.cell.get("cloak_options") or {}
    label = ComponentSpec.of(str(row.cell.get("cloak", "?")), options if isinstance(options, dict) else {}).label
    surrogates = axis_value(row, "surrogates")
    return f"{label} via {surrogates}" if surrogates else label


def _options(row: ResultRow, axis: str) -> str:
    """A victim or tracker as a sentence names it: its own options as in the grid; an adapted victim and a robust
    tracker by what was done to them (the public photos and their hash are in the row, not the sentence); nothing
    for the tracker of a scenario that trains none."""
    name = axis_value(row, axis)
    found = row.cell.get(f"{axis}_options") or {}
    options = dict(found) if isinstance(found, dict) else {}
    if axis == "tracker" and name == NO_TRACKER:
        return ""
    if axis == "victim" and "adapt" in options:
        own = {k: v for k, v in options.items() if k not in (*ADAPT_OPTIONS, "public_sha256")}
        return f"{ComponentSpec.of(name, own).label} adapted ({options['adapt']})"
    if axis == "tracker" and ROBUST_OPTION in options:
        own = {k: v for k, v in options.items() if k != ROBUST_OPTION}
        robust = options[ROBUST_OPTION]
        views = ", ".join(map(str, robust)) if isinstance(robust, list | tuple) else str(robust)
        return f"{ComponentSpec.of(name, own).label} robust-trained ({views})"
    return ComponentSpec.of(name, options).label


def threat_axes(rows: Sequence[ResultRow]) -> list[str]:
    """The threat-model axes worth naming for these rows: scenario, victim and tracker always, the rest where they
    vary."""
    varying = set(varying_axes(rows, always=()))
    return [a for a in THREAT_AXES if a in ("scenario", "victim", "tracker") or a in varying]


def threat_label(row: ResultRow, axes: Sequence[str]) -> str:
    """``protection: dlib-resnet-torch / logreg / jpeg:50 on uploads``: the scenario, then the other named parts."""
    parts = []
    for axis in axes:
        if axis == "scenario" or axis.endswith("_options"):
            continue
        if axis in ("victim", "tracker"):
            parts.append(_options(row, axis))
        elif axis == "countermeasure":
            cm, side = axis_value(row, "countermeasure"), axis_value(row, "countermeasure_side")
            if cm not in ("", NO_COUNTERMEASURE):
                parts.append(f"{cm} on {side}" if side else cm)
        elif axis == "leak_ratio":
            leak = row.cell.get("leak_ratio")
            if isinstance(leak, int | float) and leak:
                parts.append(f"leak {float(leak):g}")
        elif axis == "seed":
            parts.append(f"seed {axis_value(row, 'seed')}")
        else:
            parts.append(axis_value(row, axis))
    return f"{axis_value(row, 'scenario')}: " + " / ".join(p for p in parts if p)


def threat_order(row: ResultRow) -> tuple[str, ...]:
    """Reading order of threat models: by scenario, victim, tracker, then without a countermeasure first."""
    cm = axis_value(row, "countermeasure")
    return (axis_value(row, "scenario"), axis_value(row, "victim"), axis_value(row, "tracker"),
            "" if cm in ("", NO_COUNTERMEASURE) else "1" + cm, axis_value(row, "countermeasure_side"),
            axis_value(row, "leak_ratio"), axis_value(row, "dataset"), axis_value(row, "seed"))


@dataclass
class Verdict:
    """Where one cloak's protection is above the clean baseline, where it is not, and where nothing says."""

    cloak: str
    above: list[str] = field(default_factory=list)
    not_above: list[str] = field(default_factory=list)
    no_baseline: list[str] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        return len(self.above) + len(self.not_above) + len(self.no_baseline)

    def sentence(self) -> str:
        """One plain sentence (names are left as they are: callers escape them for their format)."""
        groups = [g for g in (self.above, self.not_above, self.no_baseline) if g]
        if len(groups) == 1 and len(groups[0]) > 3:  # one answer everywhere: say so without the list
            every = f"all {len(groups[0])} threat models measured"
            return f"{self.cloak}: " + (
                f"its protection is above the clean baseline against {every}." if self.above else
                f"it shows no protection beyond the clean error against {every}." if self.not_above else
                f"no clean baseline was run for any of its {len(groups[0])} threat models.")
        clauses = []
        if self.above:
            clauses.append(f"its protection is above the clean baseline against {_listed(self.above)}")
        if self.not_above:
            clauses.append(("it shows no protection beyond the clean error against " if not self.above else
                            "it is not above it against ") + _listed(self.not_above))
        if self.no_baseline:
            clauses.append(f"no clean baseline was run for {_listed(self.no_baseline)}")
        return f"{self.cloak}: " + "; ".join(clauses) + "."


def _listed(items: Sequence[str]) -> str:
    quoted = [f"[{item}]" for item in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def verdicts(rows: Sequence[ResultRow]) -> list[Verdict]:
    """One verdict per cloak but the baseline, in the rows' display order."""
    ordered = sorted(sort_rows(rows), key=threat_order)
    axes = threat_axes(ordered)
    out: dict[str, Verdict] = {}
    for row in ordered:
        if row.cell.get("cloak") == BASELINE_CLOAK:
            continue
        verdict = out.setdefault(cloak_label(row), Verdict(cloak_label(row)))
        low = row.metrics.get(above_baseline_keys(row.headline)[1])
        where = threat_label(row, axes)
        if low is None or not finite(low):
            verdict.no_baseline.append(where)
        elif low > 0.0:
            verdict.above.append(where)
        else:
            verdict.not_above.append(where)
    return list(out.values())


BASIS = ("Above the clean baseline: the 95% CI of the headline rate above the none cloak's, paired over the same "
         "users and query photos, excludes zero. Threat model: scenario: victim / tracker [/ countermeasure on the "
         "photos it transforms].")
