"""Loads the rooms so that their components are registered. Only the runner and CLI call this."""

from __future__ import annotations

import importlib

ROOMS = ("recognizers", "attacks", "scenarios", "reports")


def load_rooms() -> None:
    for room in ROOMS:
        importlib.import_module(room)
