"""``fawkes-eval list cloaks|victims|trackers|countermeasures|scenarios|reports``: what every registry holds."""

from __future__ import annotations

import argparse
from typing import Any

KINDS = ("cloaks", "victims", "trackers", "countermeasures", "scenarios", "reports")


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "list", help="list the registered components of one kind, with their modes, options and licenses",
        description="Lists a registry: each entry's name, modes (name:mode), summary, the options a campaign "
        "entry may set ({name: ..., option: value}: the fields of its config, with their defaults) and what it "
        "declares it needs. 'victims' loads each extractor to show its template, license and weight hashes.",
    )
    p.add_argument("kind", choices=KINDS, help="which registry")
    p.set_defaults(handler=run)


def _default(field: Any, preset: bool) -> str:
    import dataclasses

    if field.default is not dataclasses.MISSING:
        return f"={field.default!r}"
    if field.default_factory is not dataclasses.MISSING:
        return f"={field.default_factory()!r}"
    return " (set by the mode)" if preset else " (required)"


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.components import config_fields
    from fawkes_eval.registry import CLOAKS, COUNTERMEASURES, REPORTS, SCENARIOS, TRACKERS, Registry
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    if args.kind == "victims":
        from fawkes_eval import zoo

        zoo.print_zoo()
        return 0
    registries: dict[str, Registry[Any]] = {"cloaks": CLOAKS, "trackers": TRACKERS, "countermeasures": COUNTERMEASURES,
                                            "scenarios": SCENARIOS, "reports": REPORTS}
    registry = registries[args.kind]
    bases = dict.fromkeys(name.split(":", 1)[0] for name in registry.names())
    for name in bases:
        print(f"{name}: {registry.summary(name)}")
        modes = registry.modes(name)
        if modes:
            print(f"    modes: {', '.join(f'{name}:{m}' for m in modes)}")
        declared = registry.declared(name)
        for key in ("requires", "file"):
            if key in declared:
                value = declared[key]
                print(f"    {key}: {', '.join(value) if isinstance(value, tuple | list) else value}")
        flags = [key for key in ("per_user", "whole_photos") if declared.get(key)]
        if flags:
            print(f"    declares: {', '.join(flags)}")
        fields = config_fields(registry, name)
        if fields:
            preset = "presets" in declared
            print("    options: " + ", ".join(f"{f.name}{_default(f, preset)}" for f in fields))
        elif "config" in declared:
            print("    options: none")
    return 0
