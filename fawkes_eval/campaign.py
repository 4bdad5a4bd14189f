"""Campaign files: YAML in, a validated grid of cells out.

A campaign names its study (the MLflow experiment), the datasets and protected users, a grid of scenarios x
cloaks x surrogate sets x victims x trackers x countermeasures x leak ratios x seeds, the protocol's parameters
and where outputs go. Every entry of the scenarios, cloaks, victims, trackers and countermeasures axes is a
registered name (``fawkes-v1.0:mid``) or a mapping of a name and options (``{name: fawkes-v1.0:mid, steps:
100}``); options are the fields of the component's config and are checked by ``check_components``. A string
option written ``ROOT:path`` is a confined path like any other (``{name: external, clean_dir: "data:clean",
cloaked_dir: "data:cloaked"}``), and so are the ``root`` and ``subset`` of a mapping option (``public: {root:
"data:lfw", subset: "data:public.txt"}``, ``distractors: {root: "lfw:images"}``). A countermeasure entry may also
be an ordered list of entries, a chain applied in that order (``[rescale:0.5, jpeg:75]``, labelled
``rescale:0.5>jpeg:75``). Cloaks that use no surrogate (noise, none, external) are not crossed with the surrogate
sets. ``load_campaign`` reads the file with ``yaml.safe_load`` into frozen dataclasses and rejects anything it does
not understand with ``FILE:LINE: field: reason``. ``check_components`` then checks every component name against
the registries (after ``fawkes_eval.rooms.load_rooms()``), with the same kind of message.

Paths are confined: a path is either ``ROOT:relative/path`` with ROOT one of the file's ``roots:`` (directories,
absolute or relative to the file) or the built-in ``bundled`` (the data shipped with fawkes-eval), or a plain
relative path inside the campaign file's own folder. Nothing may resolve (symlinks followed) outside its root,
so a shared campaign file cannot make fawkes-eval read arbitrary files. ``outputs.dir`` lies under the working
directory.

Example (see ``campaigns/`` for complete ones)::

    study: fawkes-eval-audit
    campaign: lfw-sample-audit
    datasets:
      - {name: lfw-sample, root: "bundled:lfw_sample"}
    protected: {count: 2}
    grid:
      scenarios: [protection]
      cloaks: [none, fawkes-v1.0:low, {name: fawkes-v1.0:mid, steps: 100}, noise:low]
      surrogates: [dlib-resnet-torch]
      victims: [dlib-resnet, mobileface]
      trackers: [1nn, logreg]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from fawkes_eval.align import TEMPLATES
from fawkes_eval.components import (
    ADAPT_OPTIONS,
    CHAIN,
    DATASET_DETECTOR,
    ROBUST_OPTION,
    VICTIM_DETECTOR_OPTION,
    ComponentSpec,
    OptionError,
    component_config,
    robust_transforms,
    trains_trackers,
    uses_surrogates,
    victim_adaptation,
    victim_detector,
    without_options,
)
from fawkes_eval.results import config_hash

BUNDLED_ROOT = Path(__file__).resolve().parent / "demo_data"
NO_COUNTERMEASURE = "none"
NO_TRACKER = "none"  # the tracker axis of a scenario that trains no tracker (it compares embeddings itself)
COUNTERMEASURE_SIDES = ("uploads", "queries", "both")
DEFAULT_SCENARIO = "protection"
DEFAULT_REPORTS = ("markdown", "html")  # report formats: REPORTS entries that declare the file they write
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CampaignError(ValueError):
    """A campaign file that cannot be used: the message names the file, the line and the field."""


@dataclass(frozen=True)
class DatasetSpec:
    """An identity-folder dataset (``root/<identity>/<image>``), optionally restricted to a subset list. Faces are
    found by ``detector`` (a ``DETECTORS`` name; None: dlib HOG), or, with ``aligned`` (a template name), every
    photo is already a crop on that template and nothing is detected."""

    name: str
    root: Path
    subset: Path | None = None
    detector: str | None = None
    aligned: str | None = None

    @property
    def alignment(self) -> str:
        """How faces are found, as it enters cell keys: ``detector:<name>`` or ``aligned:<template>``."""
        return f"aligned:{self.aligned}" if self.aligned else f"detector:{self.detector or 'dlib-hog'}"


@dataclass(frozen=True)
class ProtectedSpec:
    """Who is protected: these users, or (when ``users`` is empty) ``count`` identities drawn with each seed."""

    users: tuple[str, ...] = ()
    count: int = 2


def entries(*names: str) -> tuple[ComponentSpec, ...]:
    """Grid entries without options, for campaigns built in code."""
    return tuple(ComponentSpec(n) for n in names)


@dataclass(frozen=True)
class GridSpec:
    """The axes of the grid; every combination is one cell."""

    cloaks: tuple[ComponentSpec, ...]
    surrogates: tuple[tuple[str, ...], ...]  # each entry is one surrogate set a cloak optimises against
    victims: tuple[ComponentSpec, ...]
    trackers: tuple[ComponentSpec, ...]
    countermeasures: tuple[ComponentSpec, ...] = (ComponentSpec(NO_COUNTERMEASURE),)
    leak_ratios: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    scenarios: tuple[ComponentSpec, ...] = (ComponentSpec(DEFAULT_SCENARIO),)


@dataclass(frozen=True)
class ProtocolSpec:
    """Parameters every cell's scenario shares (the scenarios themselves are a grid axis)."""

    train_fraction: float = 0.7
    n_boot: int = 2000
    topk: int = 5
    countermeasure_side: str = "uploads"  # which photos a countermeasure transforms: uploads, queries or both


@dataclass(frozen=True)
class UserModelEntry:
    """A user's own model file registered as an extractor (``models:``), handed to ``recognizers.user_model``."""

    name: str
    file: Path
    options: tuple[tuple[str, Any], ...] = ()  # every other key of the entry, sorted by name


@dataclass(frozen=True)
class OutputSpec:
    dir: Path = Path("fawkes-eval-out")  # results land in dir/<campaign name>/
    reports: tuple[str, ...] = DEFAULT_REPORTS
    examples: bool = True  # write clean / cloaked face crops (examples/) for the reports' image grids


@dataclass(frozen=True)
class Cell:
    """One point of the grid: the components of one result row (``surrogates`` is empty for a cloak that uses
    none)."""

    dataset: str
    scenario: ComponentSpec
    cloak: ComponentSpec
    surrogates: tuple[str, ...]
    victim: ComponentSpec
    tracker: ComponentSpec
    countermeasure: ComponentSpec
    leak_ratio: float
    seed: int

    @property
    def label(self) -> str:
        parts = [self.dataset, self.scenario.label, self.cloak.label]
        if self.surrogates:
            parts.append("via " + ",".join(self.surrogates))
        parts += [self.victim.label, self.tracker.label]
        if self.countermeasure.name != NO_COUNTERMEASURE:
            parts.append(self.countermeasure.label)
        if self.leak_ratio:
            parts.append(f"leak {self.leak_ratio:g}")
        return " / ".join(parts) + f" / seed {self.seed}"


@dataclass(frozen=True)
class Campaign:
    """A validated campaign. ``source`` is the YAML file it came from (None when built in code, as by ``demo``)."""

    study: str
    name: str
    datasets: tuple[DatasetSpec, ...]
    grid: GridSpec
    protected: ProtectedSpec = ProtectedSpec()
    protocol: ProtocolSpec = ProtocolSpec()
    outputs: OutputSpec = OutputSpec()
    models: tuple[UserModelEntry, ...] = ()
    source: Path | None = None
    # where each field was written ("grid.cloaks[1]" -> line), for errors found after loading
    locations: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def cells(self) -> list[Cell]:
        """Every cell, ordered so that cells sharing a cloaking run (dataset, seed, scenario, cloak, surrogates)
        are adjacent. A cloak that declares no use of surrogates gets one surrogate-free cell, not one per set, and a
        scenario that trains no tracker one cell with tracker ``none``, not one per tracker
        (what a cloak declares is read from the registries: call ``fawkes_eval.rooms.load_rooms()`` first)."""
        g = self.grid
        cells: list[Cell] = []
        for d, seed, scenario, cloak in itertools.product(self.datasets, g.seeds, g.scenarios, g.cloaks):
            surrogate_sets = g.surrogates if uses_surrogates(cloak.name) else ((),)
            trackers = g.trackers if trains_trackers(scenario.name) else (ComponentSpec(NO_TRACKER),)
            for surrogates, victim, tracker, cm, leak in itertools.product(
                surrogate_sets, g.victims, trackers, g.countermeasures, g.leak_ratios
            ):
                cells.append(Cell(d.name, scenario, cloak, surrogates, victim, tracker, cm, leak, seed))
        return cells

    def dataset(self, name: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (paths absolute), as saved next to the results and logged to MLflow."""
        data = asdict(self)
        data.pop("locations")
        return _jsonable(data)

    def fingerprint(self) -> str:
        """Hash of what determines the campaign's numbers: identifies its MLflow parent run. Where the file lies
        and where results are written do not count, so ``--out`` elsewhere still resumes the same parent."""
        data = self.to_dict()
        data.pop("source")
        data.pop("outputs")
        return config_hash(data)

    def where(self, dotted: str) -> str:
        """``FILE:LINE`` of a field (or of its nearest enclosing field), for error messages."""
        if self.source is None:
            return "<options>"
        probe = dotted
        while probe and probe not in self.locations:
            probe = re.sub(r"(\[\d+\]|\.[^.\[]+|^[^.\[]+)$", "", probe)
        return f"{self.source}:{self.locations.get(probe, 1)}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- reading the YAML ------------------------------------------------------------------------------------------

def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Reader:
    """Typed access to the loaded YAML that fails with ``FILE:LINE: field: reason``."""

    def __init__(self, source: Path, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: tuple[str | int, ...], reason: str) -> NoReturn:
        probe = path
        while probe and _dotted(probe) not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(_dotted(probe), 1)
        raise CampaignError(f"{self.source}:{line}: {_dotted(path) or '(top level)'}: {reason}")

    def mapping(
        self, value: Any, path: tuple[str | int, ...], required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(required + optional)}, got {_kind(value)}")
        for key in value:
            if key not in required and key not in optional:
                self.fail((*path, str(key)), f"unknown field; expected one of: {', '.join(required + optional)}")
        for key in required:
            if key not in value:
                self.fail(path, f"missing required field {key!r}")
        return value

    def string(self, value: Any, path: tuple[str | int, ...], pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"{value!r} must be letters, digits, '.', '_' or '-' (it names folders and runs)")
        return value.strip()

    def strings(self, value: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
        """A non-empty list of strings; a single string counts as a list of one."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail(path, f"expected a non-empty list of names, got {_kind(value)}")
        out = tuple(self.string(v, (*path, i)) for i, v in enumerate(items))
        self.unique(out, path)
        return out

    def unique(self, items: tuple[Any, ...], path: tuple[str | int, ...]) -> None:
        seen: set[Any] = set()
        for i, item in enumerate(items):
            if item in seen:
                self.fail((*path, i), f"{item!r} is listed twice")
            seen.add(item)

    def integer(self, value: Any, path: tuple[str | int, ...], minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(path, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, path: tuple[str | int, ...], low: float, high: float, closed_low: bool) -> float:
        """A number in (low, high), or in [low, high) when ``closed_low``."""
        rule = f"in {'[' if closed_low else '('}{low:g}, {high:g})"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"expected a number {rule}, got {_kind(value)}")
        if not (low <= value if closed_low else low < value) or not value < high:
            self.fail(path, f"expected a number {rule}, got {value!r}")
        return float(value)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), repr(value))


def _line_index(node: yaml.Node, source: Path) -> dict[str, int]:
    """1-based line of every field, by dotted path; refuses duplicate keys (PyYAML would keep the last silently)."""
    lines: dict[str, int] = {}

    def walk(n: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(_dotted(path), n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in n.value:
                key = str(key_node.value)
                if key in seen:
                    raise CampaignError(f"{source}:{key_node.start_mark.line + 1}: {_dotted((*path, key))}: "
                                        "field given twice")
                seen.add(key)
                lines[_dotted((*path, key))] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    walk(node, ())
    return lines


def load_campaign(path: Path | str) -> Campaign:
    """Read and validate a campaign file; raises ``CampaignError`` naming the file, line and field."""
    source = Path(path).resolve()
    try:
        text = source.read_text()
    except OSError as e:
        raise CampaignError(f"{path}: cannot read campaign file ({e.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else str(source)
        raise CampaignError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if node is None:
        raise CampaignError(f"{source}:1: the campaign file is empty")
    lines = _line_index(node, source)
    return _parse(data, _Reader(source, lines))


def _parse(data: Any, r: _Reader) -> Campaign:
    top = r.mapping(data, (), ("campaign", "datasets", "grid"),
                    ("study", "roots", "protected", "protocol", "models", "outputs"))
    roots = _parse_roots(top.get("roots"), r)
    datasets = _parse_datasets(top["datasets"], r, roots)
    models = _parse_models(top.get("models"), r, roots)
    return Campaign(
        study=r.string(top.get("study", "fawkes-eval"), ("study",)),
        name=r.string(top["campaign"], ("campaign",), _NAME),
        datasets=datasets,
        grid=_parse_grid(top["grid"], top.get("protocol"), r, roots),
        protected=_parse_protected(top.get("protected"), r),
        protocol=_parse_protocol(top.get("protocol"), r),
        outputs=_parse_outputs(top.get("outputs"), r),
        models=models,
        source=r.source,
        locations=dict(r.lines),
    )


def _parse_roots(value: Any, r: _Reader) -> dict[str, Path]:
    roots = {"bundled": BUNDLED_ROOT}
    if value is None:
        return roots
    if not isinstance(value, dict):
        r.fail(("roots",), f"expected a mapping of root names to directories, got {_kind(value)}")
    for name, directory in value.items():
        path = ("roots", str(name))
        if not isinstance(name, str) or not _NAME.match(name) or name == "bundled":
            r.fail(path, "a root name must be letters, digits, '.', '_' or '-' and not 'bundled'")
        where = Path(r.string(directory, path)).expanduser()
        resolved = (where if where.is_absolute() else r.source.parent / where).resolve()
        if not resolved.is_dir():
            r.fail(path, f"{resolved} is not a directory")
        roots[name] = resolved
    return roots


def _confined_path(value: Any, path: tuple[str | int, ...], r: _Reader, roots: dict[str, Path]) -> Path:
    """``ROOT:relative`` inside a declared root, or a relative path inside the campaign file's folder."""
    text = r.string(value, path)
    root_name, sep, rest = text.partition(":")
    if sep and root_name in roots:
        base, relative = roots[root_name], rest
    elif sep and _NAME.match(root_name) and not Path(text).is_absolute():
        r.fail(path, f"unknown root {root_name!r}; declared roots: {', '.join(sorted(roots))}")
    else:
        base, relative = r.source.parent, text
    if Path(relative).is_absolute():
        r.fail(path, f"absolute path {relative!r} not allowed: declare its folder under 'roots:' and write ROOT:path")
    resolved = (base / relative).resolve()
    if not resolved.is_relative_to(base):
        r.fail(path, f"{text!r} resolves to {resolved}, outside its root {base}")
    if not resolved.exists():
        r.fail(path, f"{resolved} does not exist")
    return resolved


def _parse_datasets(value: Any, r: _Reader, roots: dict[str, Path]) -> tuple[DatasetSpec, ...]:
    if not isinstance(value, list) or not value:
        r.fail(("datasets",), f"expected a non-empty list of datasets, got {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        path: tuple[str | int, ...] = ("datasets", i)
        d = r.mapping(item, path, ("name", "root"), ("subset", "detector", "aligned"))
        root = _confined_path(d["root"], (*path, "root"), r, roots)
        if not root.is_dir():
            r.fail((*path, "root"), f"{root} is not a directory")
        subset = _confined_path(d["subset"], (*path, "subset"), r, roots) if d.get("subset") is not None else None
        if "detector" in d and "aligned" in d:
            r.fail((*path, "aligned"), "a pre-aligned dataset is not detected: give detector or aligned, not both")
        aligned = r.string(d["aligned"], (*path, "aligned")) if "aligned" in d else None
        if aligned is not None and aligned not in TEMPLATES:
            r.fail((*path, "aligned"), f"unknown template {aligned!r}; known: {', '.join(TEMPLATES)}")
        detector = r.string(d["detector"], (*path, "detector")) if "detector" in d else None
        out.append(DatasetSpec(r.string(d["name"], (*path, "name"), _NAME), root, subset, detector, aligned))
    r.unique(tuple(d.name for d in out), ("datasets",))
    return tuple(out)


def _parse_protected(value: Any, r: _Reader) -> ProtectedSpec:
    if value is None:
        return ProtectedSpec()
    p = r.mapping(value, ("protected",), (), ("users", "count"))
    if p.get("users") and "count" in p:
        r.fail(("protected", "count"), "give either users or count, not both")
    if p.get("users"):
        users = r.strings(p["users"], ("protected", "users"))
        return ProtectedSpec(users=users, count=len(users))
    return ProtectedSpec(count=r.integer(p.get("count", 2), ("protected", "count"), 1))


def _parse_entry(value: Any, path: tuple[str | int, ...], r: _Reader, roots: dict[str, Path]) -> ComponentSpec:
    """A name, or a mapping ``{name: ..., option: value, ...}``; ``ROOT:path`` strings become confined paths, and
    so does a mapping option with a ``root`` (photos outside ``datasets:``, such as an adaptive victim's public
    identities)."""
    if isinstance(value, str):
        return ComponentSpec(r.string(value, path))
    if not isinstance(value, dict) or "name" not in value:
        r.fail(path, f"expected a name or a mapping with 'name' and options, got {_kind(value)}")
    options: dict[str, Any] = {}
    for key, option in value.items():
        if key == "name":
            continue
        if not isinstance(key, str) or not key.isidentifier():
            r.fail((*path, str(key)), "an option name must be an identifier (a config field of the component)")
        if isinstance(option, str) and option.partition(":")[0] in roots and option.partition(":")[1]:
            option = str(_confined_path(option, (*path, key), r, roots))
        elif isinstance(option, dict) and "root" in option:
            option = _parse_location(option, (*path, key), r, roots)
        options[key] = option
    return ComponentSpec.of(r.string(value["name"], (*path, "name")), options)


def _parse_location(value: dict[Any, Any], path: tuple[str | int, ...], r: _Reader, roots: dict[str, Path]) -> dict[str, str]:
    """An option naming photos outside ``datasets:`` (``public: {root: ROOT:path, subset: ROOT:file}``): confined
    like a dataset's root and subset."""
    d = r.mapping(value, path, ("root",), ("subset",))
    root = _confined_path(d["root"], (*path, "root"), r, roots)
    if not root.is_dir():
        r.fail((*path, "root"), f"{root} is not a directory")
    out = {"root": str(root)}
    if d.get("subset") is not None:
        out["subset"] = str(_confined_path(d["subset"], (*path, "subset"), r, roots))
    return out


def _parse_entries(value: Any, path: tuple[str | int, ...], r: _Reader, roots: dict[str, Path]) -> tuple[ComponentSpec, ...]:
    """A non-empty list of entries; a single entry counts as a list of one."""
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list) or not items:
        r.fail(path, f"expected a non-empty list of names or mappings, got {_kind(value)}")
    out = tuple(_parse_entry(v, (*path, i), r, roots) for i, v in enumerate(items))
    r.unique(tuple(e.label for e in out), path)
    return out


def _parse_countermeasures(value: Any, r: _Reader, roots: dict[str, Path]) -> tuple[ComponentSpec, ...]:
    """Countermeasure entries: each a name, a mapping, or an ordered list of them (a chain, applied in order:
    ``[rescale:0.5, jpeg:75]``, labelled ``rescale:0.5>jpeg:75``)."""
    path: tuple[str | int, ...] = ("grid", "countermeasures")
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list) or not items:
        r.fail(path, f"expected a non-empty list of names, mappings or lists of them (chains), got {_kind(value)}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, list):
            spec = _parse_entry(item, (*path, i), r, roots)
            if spec.name == CHAIN:
                r.fail((*path, i), "write a chain as a list of its steps: [rescale:0.5, jpeg:75]")
            out.append(spec)
            continue
        if not item:
            r.fail((*path, i), "a chain needs at least one step")
        steps = []
        for j, step in enumerate(item):
            if isinstance(step, list):
                r.fail((*path, i, j), "a chain's step is one countermeasure, not a list")
            spec = _parse_entry(step, (*path, i, j), r, roots)
            if spec.name in (NO_COUNTERMEASURE, CHAIN):
                r.fail((*path, i, j), f"{spec.name!r} cannot be a step of a chain")
            steps.append(spec)
        out.append(steps[0] if len(steps) == 1 else ComponentSpec.chain(steps))
    r.unique(tuple(e.label for e in out), path)
    return tuple(out)


def _parse_grid(value: Any, protocol: Any, r: _Reader, roots: dict[str, Path]) -> GridSpec:
    axes = ("cloaks", "surrogates", "victims", "trackers")
    g = r.mapping(value, ("grid",), axes, ("scenarios", "countermeasures", "leak_ratios", "seeds"))
    surrogates_value = g["surrogates"]
    if not isinstance(surrogates_value, list) or not surrogates_value:
        r.fail(("grid", "surrogates"), f"expected a non-empty list of surrogate sets, got {_kind(surrogates_value)}")
    surrogate_sets = tuple(r.strings(s, ("grid", "surrogates", i)) for i, s in enumerate(surrogates_value))
    r.unique(surrogate_sets, ("grid", "surrogates"))
    leak_values = g.get("leak_ratios", [0.0])
    if not isinstance(leak_values, list) or not leak_values:
        r.fail(("grid", "leak_ratios"), f"expected a non-empty list of numbers, got {_kind(leak_values)}")
    leaks = tuple(r.number(v, ("grid", "leak_ratios", i), 0.0, 1.0, closed_low=True) for i, v in enumerate(leak_values))
    r.unique(leaks, ("grid", "leak_ratios"))
    seed_values = g.get("seeds", [0])
    if not isinstance(seed_values, list) or not seed_values:
        r.fail(("grid", "seeds"), f"expected a non-empty list of integers, got {_kind(seed_values)}")
    seeds = tuple(r.integer(v, ("grid", "seeds", i), 0) for i, v in enumerate(seed_values))
    r.unique(seeds, ("grid", "seeds"))
    # protocol.scenario: the one-scenario spelling of grid.scenarios, kept as an alias
    alias = protocol.get("scenario") if isinstance(protocol, dict) else None
    if alias is not None and "scenarios" in g:
        r.fail(("protocol", "scenario"), "give grid.scenarios or protocol.scenario (its alias), not both")
    scenarios = (_parse_entries(g["scenarios"], ("grid", "scenarios"), r, roots) if "scenarios" in g else
                 (_parse_entry(alias, ("protocol", "scenario"), r, roots),) if alias is not None else
                 (ComponentSpec(DEFAULT_SCENARIO),))
    return GridSpec(
        cloaks=_parse_entries(g["cloaks"], ("grid", "cloaks"), r, roots),
        surrogates=surrogate_sets,
        victims=_parse_entries(g["victims"], ("grid", "victims"), r, roots),
        trackers=_parse_entries(g["trackers"], ("grid", "trackers"), r, roots),
        countermeasures=_parse_countermeasures(g.get("countermeasures", [NO_COUNTERMEASURE]), r, roots),
        leak_ratios=leaks,
        seeds=seeds,
        scenarios=scenarios,
    )


def _parse_protocol(value: Any, r: _Reader) -> ProtocolSpec:
    if value is None:
        return ProtocolSpec()
    p = r.mapping(value, ("protocol",), (), ("scenario", "train_fraction", "n_boot", "topk", "countermeasure_side"))
    default = ProtocolSpec()
    side = r.string(p.get("countermeasure_side", default.countermeasure_side), ("protocol", "countermeasure_side"))
    if side not in COUNTERMEASURE_SIDES:
        r.fail(("protocol", "countermeasure_side"), f"expected one of {', '.join(COUNTERMEASURE_SIDES)}, got {side!r}")
    return ProtocolSpec(
        train_fraction=r.number(p.get("train_fraction", default.train_fraction), ("protocol", "train_fraction"),
                                0.0, 1.0, closed_low=False),
        n_boot=r.integer(p.get("n_boot", default.n_boot), ("protocol", "n_boot"), 100),
        topk=r.integer(p.get("topk", default.topk), ("protocol", "topk"), 1),
        countermeasure_side=side,
    )


def _parse_models(value: Any, r: _Reader, roots: dict[str, Path]) -> tuple[UserModelEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.fail(("models",), f"expected a list of models, got {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        path: tuple[str | int, ...] = ("models", i)
        if not isinstance(item, dict):
            r.fail(path, f"expected a mapping with name and file, got {_kind(item)}")
        m = r.mapping(item, path, ("name", "file"), tuple(str(k) for k in item if k not in ("name", "file")))
        file = _confined_path(m["file"], (*path, "file"), r, roots)
        options = tuple(sorted((str(k), v) for k, v in m.items() if k not in ("name", "file")))
        out.append(UserModelEntry(r.string(m["name"], (*path, "name"), _NAME), file, options))
    r.unique(tuple(m.name for m in out), ("models",))
    return tuple(out)


def _parse_outputs(value: Any, r: _Reader) -> OutputSpec:
    if value is None:
        return OutputSpec()
    o = r.mapping(value, ("outputs",), (), ("dir", "reports", "examples"))
    out_dir = Path(r.string(o.get("dir", str(OutputSpec.dir)), ("outputs", "dir")))
    if out_dir.is_absolute() or ".." in out_dir.parts:
        r.fail(("outputs", "dir"), "must be a relative path under the working directory (or pass --out)")
    reports = r.strings(o["reports"], ("outputs", "reports")) if "reports" in o else DEFAULT_REPORTS
    examples = o.get("examples", True)
    if not isinstance(examples, bool):
        r.fail(("outputs", "examples"), f"expected true or false, got {_kind(examples)}")
    return OutputSpec(out_dir, reports, examples)


# --- checks against the registries -----------------------------------------------------------------------------

def _check_adaptation(campaign: Campaign, dotted: str, spec: ComponentSpec, fail: Any) -> None:
    """An adaptive victim (``adapt:``): a registered adaptation, a differentiable extractor, a known public set."""
    from fawkes_eval.components import extractor_facts
    from fawkes_eval.registry import EVALUATIONS

    try:
        adaptation = victim_adaptation(spec)
    except OptionError as e:
        fail(dotted, e)
    if adaptation is None:
        return
    methods = [n for n in EVALUATIONS.names() if EVALUATIONS.declared(n).get("adapts_victims")]
    if adaptation.adapt not in methods:
        fail(f"{dotted}.adapt", ValueError(f"unknown adaptation {adaptation.adapt!r}; known: {', '.join(methods)}"))
    user_models = {m.name for m in campaign.models}
    if spec.name not in user_models:
        try:
            facts = extractor_facts(spec.name)
        except (KeyError, ValueError) as e:
            fail(dotted, e)
        if not facts.differentiable:
            fail(f"{dotted}.adapt", ValueError(
                f"victim {spec.name!r} is not differentiable: the adaptive tracker fine-tunes the network's weights "
                "(choose a differentiable zoo model, e.g. dlib-resnet-torch)"))
    if isinstance(adaptation.public, str) and adaptation.public not in {d.name for d in campaign.datasets}:
        fail(f"{dotted}.public", ValueError(
            f"public {adaptation.public!r} is not a dataset of this campaign ({', '.join(d.name for d in campaign.datasets)}); "
            "name one, or give {root: ROOT:path, subset: ROOT:file}"))


def check_components(campaign: Campaign) -> None:
    """Resolve every component of every cell before anything runs (call ``load_rooms()`` first): names against
    the registries, each entry's options against its config, and each cloak against each surrogate set it will be
    crossed with (differentiable, one alignment template). Raises ``CampaignError`` at the entry's line."""
    from fawkes_eval.components import check_surrogates, extractor_facts
    from fawkes_eval.registry import (
        CLOAKS,
        COUNTERMEASURES,
        DETECTORS,
        EXTRACTORS,
        REPORTS,
        SCENARIOS,
        TRACKERS,
        Registry,
        UnknownComponentError,
    )

    user_models = {m.name for m in campaign.models}
    g = campaign.grid

    def fail(dotted: str, error: Exception) -> NoReturn:
        raise CampaignError(f"{campaign.where(dotted)}: {dotted}: {error}") from None

    def entry(dotted: str, registry: Registry[Any], spec: ComponentSpec) -> None:
        try:
            registry.mode_params(spec.name)
            component_config(registry, spec.name, spec.options_dict())
        except (UnknownComponentError, OptionError) as e:
            fail(dotted, e)

    for i, dataset in enumerate(campaign.datasets):
        if dataset.aligned is not None and dataset.aligned not in TEMPLATES:
            fail(f"datasets[{i}].aligned", ValueError(f"unknown template {dataset.aligned!r}; known: "
                                                      f"{', '.join(TEMPLATES)}"))
        if dataset.detector is not None:
            try:
                DETECTORS.mode_params(dataset.detector)
            except UnknownComponentError as e:
                fail(f"datasets[{i}].detector", e)
    for i, spec in enumerate(g.scenarios):
        entry(f"grid.scenarios[{i}]", SCENARIOS, spec)
    for i, spec in enumerate(g.cloaks):
        entry(f"grid.cloaks[{i}]", CLOAKS, spec)
    for i, surrogate_set in enumerate(g.surrogates):
        for j, name in enumerate(surrogate_set):
            if name not in user_models:
                entry(f"grid.surrogates[{i}][{j}]", EXTRACTORS, ComponentSpec(name))
    for i, spec in enumerate(g.victims):
        own = without_options(spec, *ADAPT_OPTIONS, VICTIM_DETECTOR_OPTION)
        if own.name not in user_models or own.options:
            entry(f"grid.victims[{i}]", EXTRACTORS, own)
        # what the model declared at registration (its pipeline's detector), checked like an explicit option
        declared = EXTRACTORS.declared(own.name).get("detector") if own.name in EXTRACTORS else None
        try:
            detector = victim_detector(spec, declared)
            if detector is not None:
                DETECTORS.mode_params(detector)
        except UnknownComponentError as e:
            fail(f"grid.victims[{i}].detector", UnknownComponentError(f"{e} (or {DATASET_DETECTOR}: the dataset's)"))
        except OptionError as e:
            fail(f"grid.victims[{i}].detector", e)
        _check_adaptation(campaign, f"grid.victims[{i}]", spec, fail)
    for i, spec in enumerate(g.trackers):
        entry(f"grid.trackers[{i}]", TRACKERS, without_options(spec, ROBUST_OPTION))
        try:
            robust = robust_transforms(spec)
        except OptionError as e:
            fail(f"grid.trackers[{i}].robust", e)
        refusing = [s.label for s in g.scenarios
                    if trains_trackers(s.name) and not SCENARIOS.declared(s.name).get("augmentations")]
        if robust and refusing:
            fail(f"grid.trackers[{i}].robust", ValueError(
                f"scenario(s) {', '.join(refusing)} cannot train their trackers through transforms: robust "
                "training does not apply"))
    for i, spec in enumerate(g.countermeasures):
        for j, step in enumerate(spec.steps):  # a chain: each step at its own line
            entry(f"grid.countermeasures[{i}][{j}]", COUNTERMEASURES, step)
        if spec.name != NO_COUNTERMEASURE:
            entry(f"grid.countermeasures[{i}]", COUNTERMEASURES, spec)
    formats = [n for n in REPORTS.names() if "file" in REPORTS.declared(n)]
    for i, name in enumerate(campaign.outputs.reports):
        if name not in formats:
            fail(f"outputs.reports[{i}]", ValueError(f"expected a report format ({', '.join(formats)}), got {name!r}"))
    adapted = [i for i, v in enumerate(g.victims) if victim_adaptation(v) is not None]
    whole = [c.label for c in g.cloaks if CLOAKS.declared(c.name).get("whole_photos")]
    if adapted and whole:
        fail(f"grid.victims[{adapted[0]}]", ValueError(
            f"an adaptive victim cloaks its public photos with each cell's cloak; {', '.join(whole)} only serve(s) "
            "another tool's files of the dataset's users"))
    for i, surrogate_set in enumerate(g.surrogates):
        facts = [extractor_facts(name) for name in surrogate_set]
        for j, spec in enumerate(g.cloaks):
            try:
                check_surrogates(spec.name, facts)
            except OptionError as e:
                fail(f"grid.surrogates[{i}]", ValueError(f"with grid.cloaks[{j}] ({spec.label}): {e}"))
