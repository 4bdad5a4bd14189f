"""One small generic registry for every kind of component (cloaks, extractors, trackers, scenarios).

Components register with a decorator, or lazily as a ``"module:attr"`` string so that heavy backends
(TensorFlow, insightface, deepface) are imported only when a component is first created.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """Raised when a name is not registered; the message lists what is."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass
class _Entry(Generic[T]):
    target: Callable[..., T] | str
    summary: str = ""
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    declared: dict[str, Any] = field(default_factory=dict)  # what the component needs and offers (see ``declared``)


class Registry(Generic[T]):
    """Maps ``name`` (optionally ``name:mode``) to a factory.

    ``create("fawkes-v1.0:mid", surrogates=[...])`` looks up ``fawkes-v1.0``, merges the keyword
    arguments registered for mode ``mid`` with the caller's (the caller wins), and calls the factory.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry[T]] = {}

    def register(
        self, name: str, *, summary: str = "", modes: dict[str, dict[str, Any]] | None = None, **declared: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator. ``declared``: what the component needs or offers, readable without creating it (as ART's
        estimator requirements), e.g. ``requires=("surrogates",)`` for a cloak."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self._add(name, _Entry(factory, summary or _first_line(factory.__doc__), modes or {}, declared))
            return factory

        return decorator

    def register_lazy(
        self, name: str, target: str, *, summary: str = "", modes: dict[str, dict[str, Any]] | None = None,
        **declared: Any,
    ) -> None:
        """Register ``"package.module:attr"`` without importing it (``declared`` as in ``register``)."""
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._add(name, _Entry(target, summary, modes or {}, declared))

    def _add(self, name: str, entry: _Entry[T]) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def names(self) -> list[str]:
        """Registered names, each mode spelled out as ``name:mode``."""
        out: list[str] = []
        for name, entry in sorted(self._entries.items()):
            out.extend(f"{name}:{m}" for m in entry.modes) if entry.modes else out.append(name)
        return out

    def summary(self, name: str) -> str:
        return self._entry(name.split(":", 1)[0]).summary

    def declared(self, spec: str) -> dict[str, Any]:
        """What ``spec``'s component declared at registration (``requires``, ...), without importing it."""
        return dict(self._entry(spec.split(":", 1)[0]).declared)

    def modes(self, name: str) -> list[str]:
        return list(self._entry(name.split(":", 1)[0]).modes)

    def mode_params(self, spec: str) -> dict[str, Any]:
        base, _, mode = spec.partition(":")
        entry = self._entry(base)
        if not mode:
            return {}
        if mode not in entry.modes:
            raise UnknownComponentError(
                f"{self.kind} {base!r} has no mode {mode!r}; modes: {', '.join(entry.modes) or 'none'}"
            )
        return dict(entry.modes[mode])

    def factory(self, name: str) -> Callable[..., T]:
        entry = self._entry(name.split(":", 1)[0])
        if isinstance(entry.target, str):
            entry.target = load_target(entry.target)
            if not entry.summary:
                entry.summary = _first_line(entry.target.__doc__)
        assert not isinstance(entry.target, str)
        return entry.target

    def create(self, spec: str, **kwargs: Any) -> T:
        params = self.mode_params(spec)
        params.update(kwargs)
        return self.factory(spec)(**params)

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, str) and spec.split(":", 1)[0] in self._entries

    def _entry(self, name: str) -> _Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._entries)) or 'none'}"
            ) from None


def load_target(target: str) -> Any:
    """The object a ``"package.module:attr"`` string names (imports the module)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


# The registries every room fills; the runner and CLI find the rooms' components only through these.
from fawkes_eval.types import CloakGenerator, Countermeasure, FaceDetector, FeatureExtractor, Scenario, Tracker  # noqa: E402

CLOAKS: Registry[CloakGenerator] = Registry("cloak")
EXTRACTORS: Registry[FeatureExtractor] = Registry("extractor")
TRACKERS: Registry[Tracker] = Registry("tracker")
SCENARIOS: Registry[Scenario] = Registry("scenario")
# standalone measurements that are not campaign cells (the zoo's k-fold check, LFW pairs verification, ...)
EVALUATIONS: Registry[Any] = Registry("evaluation")
COUNTERMEASURES: Registry[Countermeasure] = Registry("countermeasure")
REPORTS: Registry[Any] = Registry("report")
DETECTORS: Registry[FaceDetector] = Registry("detector")
DETECTORS.register_lazy("dlib-hog", "fawkes_eval.align:DlibHogDetector",
                        summary="dlib's HOG frontal face detector: boxes only (landmarks from dlib's predictors)")
