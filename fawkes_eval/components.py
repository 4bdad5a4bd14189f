"""Components from a name and options: the one way to build a cloak generator (runner, ``cloak``, tests, benchmarks).

A grid entry is a name (``fawkes-v1.0:mid``) or a name with options (``{name: fawkes-v1.0:mid, steps: 100}``).
Options are the fields of the config dataclass the component declared at registration (``config=``); for a
mode, they override that mode's preset (``presets=``). What a component is given besides its config comes from
its declared ``requires`` (see ``attacks/__init__.py``), never from inspecting its constructor.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fawkes_eval.registry import (
    CLOAKS,
    COUNTERMEASURES,
    EXTRACTORS,
    SCENARIOS,
    Registry,
    UnknownComponentError,
    load_target,
)
from fawkes_eval.types import CloakGenerator, ExtractorInfo, FeatureExtractor

# a countermeasure entry written as a list: its steps, applied in order (scenarios/countermeasures.py:Chain)
CHAIN = "chain"

# the template a surrogate-free control (noise, none, external) works on when no surrogate or option names one
DEFAULT_TEMPLATE = "dlib-150"


class OptionError(ValueError):
    """Options a component does not take, or values its config refuses; the message names the component."""


@dataclass(frozen=True)
class ComponentSpec:
    """A grid entry: a registered name (with its ``:mode``) and options, sorted by key."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def base(self) -> str:
        return self.name.partition(":")[0]

    @property
    def mode(self) -> str:
        return self.name.partition(":")[2]

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def steps(self) -> tuple[ComponentSpec, ...]:
        """A chain's steps in order (a countermeasure entry written as a list); empty for any other entry."""
        return tuple(self.options_dict().get("steps", ())) if self.name == CHAIN else ()

    @classmethod
    def chain(cls, steps: Sequence[ComponentSpec]) -> ComponentSpec:
        return cls(CHAIN, (("steps", tuple(steps)),))

    @property
    def label(self) -> str:
        """``name`` or ``name{key=value,...}``: how cells, reports and MLflow show the entry; a chain's steps
        joined by ``>`` (``rescale:0.5>jpeg:75``)."""
        if self.name == CHAIN:
            return ">".join(step.label for step in self.steps)
        if not self.options:
            return self.name
        return self.name + "{" + ",".join(f"{k}={_short_value(v)}" for k, v in self.options) + "}"

    def to_jsonable(self) -> str | dict[str, Any] | list[Any]:
        if self.name == CHAIN:
            return [step.to_jsonable() for step in self.steps]
        return self.name if not self.options else {"name": self.name, **self.options_dict()}

    @classmethod
    def of(cls, name: str, options: Mapping[str, Any] | None = None) -> ComponentSpec:
        return cls(name, tuple(sorted((options or {}).items())))


def _short_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else "..." + text[-37:]


def config_fields(registry: Registry[Any], name: str) -> list[dataclasses.Field[Any]]:
    """The options ``name`` takes: the fields of its declared config (none when it declares no config)."""
    target = registry.declared(name).get("config")
    return list(dataclasses.fields(load_target(target))) if target else []


def component_config(registry: Registry[Any], name: str, options: Mapping[str, Any]) -> Any:
    """The config dataclass of ``name`` with ``options`` applied (over its mode's preset), or None when it
    declares no config and no option is given. Raises ``OptionError`` naming unknown keys and the allowed ones."""
    declared = registry.declared(name)
    if "config" not in declared:
        if options:
            raise OptionError(f"{registry.kind} {name!r} takes no options, got: {', '.join(sorted(options))}")
        return None
    config_class = load_target(declared["config"])
    allowed = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OptionError(f"{registry.kind} {name!r}: unknown option(s) {', '.join(unknown)}; its options: "
                          f"{', '.join(allowed) or 'none'}")
    mode = name.partition(":")[2]
    presets: Mapping[str, Any] = load_target(declared["presets"]) if "presets" in declared else {}
    try:
        if mode and mode in presets:
            return dataclasses.replace(presets[mode], **options)
        required = [f.name for f in dataclasses.fields(config_class)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing := [k for k in required if k not in options]:
            raise OptionError(f"{registry.kind} {name!r} needs the option(s) {', '.join(missing)}")
        return config_class(**options)
    except (TypeError, ValueError) as e:
        if isinstance(e, OptionError):
            raise
        raise OptionError(f"{registry.kind} {name!r}: {e}") from None


def create_component(registry: Registry[Any], spec: ComponentSpec, **given: Any) -> Any:
    """A victim, tracker, countermeasure or scenario from its grid entry: options go into its declared config."""
    config = component_config(registry, spec.name, spec.options_dict())
    return registry.create(spec.name, **given, **({"config": config} if config is not None else {}))


def requires(name: str) -> tuple[str, ...]:
    """What the cloak ``name`` is given besides its config (declared at registration)."""
    return tuple(CLOAKS.declared(name).get("requires", ()))


def uses_surrogates(name: str) -> bool:
    return "surrogates" in requires(name)


def trains_trackers(scenario: str) -> bool:
    """Whether a scenario trains the grid's trackers (one that compares embeddings itself declares
    ``trackers=False``, and its cells are not crossed with the trackers axis)."""
    return bool(SCENARIOS.declared(scenario).get("trackers", True))


def declared_by(generator: CloakGenerator) -> dict[str, Any]:
    """What a generator object's registered name declared (nothing for a generator built outside the registry)."""
    return CLOAKS.declared(generator.name) if generator.name in CLOAKS else {}


def build_generator(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    surrogates: Sequence[FeatureExtractor] = (),
    template: str | None = None,
    aligner: Any = None,
    device: str | None = None,
) -> CloakGenerator:
    """The cloak ``name`` with ``options``, given what it declared it requires.

    ``surrogates``: for cloaks that optimise (and ``device``, their torch device; default CUDA when present);
    ``template``: for controls (default: the first surrogate's, else ``DEFAULT_TEMPLATE``); ``aligner``: for cloaks
    read from files (``external``)."""
    needs = requires(name)
    kwargs: dict[str, Any] = CLOAKS.mode_params(name)
    config = component_config(CLOAKS, name, options or {})
    if config is not None:
        kwargs["config"] = config
    if "surrogates" in needs:
        if not surrogates:
            raise OptionError(f"cloak {name!r} optimises against surrogates; none given")
        kwargs["surrogates"] = list(surrogates)
        if device is not None:
            kwargs["device"] = device
    if "template" in needs:
        kwargs["template"] = template or (surrogates[0].info.template if surrogates else DEFAULT_TEMPLATE)
    if "aligner" in needs:
        kwargs["aligner"] = aligner
    return CLOAKS.factory(name)(**kwargs)


@dataclass(frozen=True)
class SurrogateFacts:
    """What validation needs to know of a model: its alignment template and whether gradients reach its input."""

    name: str
    template: str
    differentiable: bool


def extractor_facts(name: str, user_models: Mapping[str, SurrogateFacts] | None = None) -> SurrogateFacts:
    """Declared facts of an extractor (``EXTRACTORS.register_lazy(..., template=, differentiable=)``), else read
    from the loaded model's ``info``."""
    if user_models and name in user_models:
        return user_models[name]
    declared = EXTRACTORS.declared(name)
    if "template" in declared and "differentiable" in declared:
        return SurrogateFacts(name, declared["template"], bool(declared["differentiable"]))
    info: ExtractorInfo = EXTRACTORS.create(name).info
    return SurrogateFacts(name, info.template, info.differentiable)


def check_surrogates(cloak: str, surrogates: Sequence[SurrogateFacts]) -> None:
    """Refuse a surrogate set the cloak cannot use (raised before anything runs): not differentiable, or of
    several alignment templates (a cloak optimises one crop)."""
    if not uses_surrogates(cloak):
        return
    not_differentiable = [s.name for s in surrogates if not s.differentiable]
    if not_differentiable:
        raise OptionError(f"cloak {cloak!r} needs differentiable surrogates; not differentiable: "
                          f"{', '.join(not_differentiable)}")
    templates = {s.template for s in surrogates}
    if len(templates) > 1:
        named = ", ".join(f"{s.name} ({s.template})" for s in surrogates)
        raise OptionError(f"cloak {cloak!r}: surrogates of one set must share one alignment template, got {named}")



# --- options every tracker and victim entry takes, whatever the component ------------------------------------

# Robust training's default views (``robust: default``): one mid strength per countermeasure family, each a
# processing a platform applies anyway; a training set (1 + 6) times the size. ``scenarios.robust`` uses it too.
ROBUST_DEFAULT = ("jpeg:50", "blur:1", "rescale:0.5", "median:3", "gaussian-noise:4", "bit-depth:5")
ROBUST_OPTION = "robust"


def robust_transforms(spec: ComponentSpec) -> tuple[str, ...]:
    """The countermeasures a tracker entry trains through (its ``robust`` option: ``default`` or a list of
    ``COUNTERMEASURES`` names); empty when it has none. Raises ``OptionError`` for an unusable value or name."""
    value = spec.options_dict().get(ROBUST_OPTION)
    if value is None:
        return ()
    names = ROBUST_DEFAULT if value == "default" else value
    if not isinstance(names, list | tuple) or not names or not all(isinstance(n, str) and n for n in names):
        raise OptionError(f"tracker {spec.name!r}: robust must be 'default' or a non-empty list of countermeasure "
                          f"names such as [jpeg:50, blur:1], got {value!r}")
    if len(set(names)) != len(names):
        raise OptionError(f"tracker {spec.name!r}: robust lists a transform twice: {list(names)}")
    for name in names:
        try:
            COUNTERMEASURES.mode_params(name)
        except UnknownComponentError as e:
            raise OptionError(f"tracker {spec.name!r}: robust: {e}") from None
        modes = COUNTERMEASURES.modes(name)
        if modes and ":" not in name:
            raise OptionError(f"tracker {spec.name!r}: robust: {name!r} needs a strength, one of "
                              f"{', '.join(f'{name}:{m}' for m in modes)}")
    return tuple(names)


def without_options(spec: ComponentSpec, *keys: str) -> ComponentSpec:
    """``spec`` without the options ``keys`` (what the component's own config receives)."""
    return ComponentSpec(spec.name, tuple((k, v) for k, v in spec.options if k not in keys))


@dataclass(frozen=True)
class VictimAdaptation:
    """A victim entry's adaptive-tracker options: ``{name: dlib-resnet-torch, adapt: facecure, public: ...,
    epochs: 5, lr: 1e-4}``.

    ``adapt``: the adaptation (an ``EVALUATIONS`` entry that declares ``adapts_victims``; ``facecure``).
    ``public``: the public identities' photos the tracker cloaks and fine-tunes on: the name of a campaign
    dataset, or ``{root: ROOT:path, subset: ROOT:file}``; any identity protected in the cell is dropped.
    ``epochs``, ``lr``, ``head_lr``, ``batch_size``: the fine-tune. ``per_identity``: at most this many photos of
    each public identity (0: all). ``held_out``: photos per public identity kept out of the fine-tune, on which
    the 1-NN error of the cloaked copies is measured before and after (the adaptation's own check)."""

    adapt: str
    public: str | Mapping[str, str]
    epochs: int = 5
    lr: float = 1e-4
    head_lr: float = 1e-2
    batch_size: int = 32
    per_identity: int = 0
    held_out: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.adapt, str) or not self.adapt:
            raise ValueError(f"adapt must name an adaptation (facecure), got {self.adapt!r}")
        if isinstance(self.public, Mapping):
            if "root" not in self.public or set(self.public) - {"root", "subset"}:
                raise ValueError(f"public must be a dataset name or {{root, subset}}, got keys {sorted(self.public)}")
        elif not isinstance(self.public, str) or not self.public:
            raise ValueError(f"public must be a dataset name or {{root, subset}}, got {self.public!r}")
        ints = {"epochs": (self.epochs, 1), "batch_size": (self.batch_size, 1), "per_identity": (self.per_identity, 0),
                "held_out": (self.held_out, 0)}
        for key, (value, low) in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        for key, rate in (("lr", self.lr), ("head_lr", self.head_lr)):
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
                raise ValueError(f"{key} must be a positive number, got {rate!r}")


ADAPT_OPTIONS = tuple(f.name for f in dataclasses.fields(VictimAdaptation))


def victim_adaptation(spec: ComponentSpec) -> VictimAdaptation | None:
    """The adaptive-tracker options of a victim entry (None without ``adapt``); the other options are the
    extractor's own. Raises ``OptionError`` naming the victim."""
    options = {k: v for k, v in spec.options if k in ADAPT_OPTIONS}
    if not options:
        return None
    if "adapt" not in options:
        raise OptionError(f"victim {spec.name!r}: {', '.join(sorted(options))} only go with adapt: facecure")
    if "public" not in options:
        raise OptionError(f"victim {spec.name!r}: adapt needs public: the public identities' dataset "
                          "(a campaign dataset name, or {root, subset})")
    try:
        return VictimAdaptation(**options)
    except (TypeError, ValueError) as e:
        raise OptionError(f"victim {spec.name!r}: {e}") from None


# A victim entry's ``detector`` option: ``{name: insightface-mbf-w600k, detector: dataset}`` detects with the dataset's
# detector instead of the one its own pipeline declares (``ExtractorInfo.detector``); a ``DETECTORS`` name gives that one.
VICTIM_DETECTOR_OPTION = "detector"
DATASET_DETECTOR = "dataset"


def victim_detector(spec: ComponentSpec, declared: str | None) -> str | None:
    """The detector a victim entry re-detects photos with: its ``detector`` option (``dataset``: None, the dataset's
    own; else a ``DETECTORS`` name), else what the model declared (``declared``; None: the dataset's). Raises
    ``OptionError`` for a value that is not a non-empty string."""
    options = spec.options_dict()
    if VICTIM_DETECTOR_OPTION not in options:
        return declared
    value = options[VICTIM_DETECTOR_OPTION]
    if not isinstance(value, str) or not value:
        raise OptionError(f"victim {spec.name!r}: detector must be {DATASET_DETECTOR!r} or a detector's name (scrfd, "
                          f"dlib-hog), got {value!r}")
    return None if value == DATASET_DETECTOR else value
