"""Example image pairs (clean, cloaked) on disk, so a report built later from MLflow or a results file can show
its image grid.

Layout of an examples folder: ``<stem>.clean.png`` beside ``<stem>.cloaked.png`` for each pair; an optional
``examples.json`` (a list of ``{"label", "clean", "cloaked"}``, file names inside the folder) gives the labels and
order, else the stem is the label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fawkes_eval.results import ImageExample

INDEX = "examples.json"
CLEAN, CLOAKED = ".clean.png", ".cloaked.png"


def write_examples(examples: Sequence[ImageExample], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for i, ex in enumerate(examples):
        stem = f"{i:03d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", ex.label)[:80]
        Image.fromarray(np.asarray(ex.clean, dtype=np.uint8)).save(folder / f"{stem}{CLEAN}")
        Image.fromarray(np.asarray(ex.cloaked, dtype=np.uint8)).save(folder / f"{stem}{CLOAKED}")
        index.append({"label": ex.label, "clean": f"{stem}{CLEAN}", "cloaked": f"{stem}{CLOAKED}"})
    (folder / INDEX).write_text(json.dumps(index, indent=1))


def _rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def _entries(folder: Path) -> list[tuple[str, str, str]]:
    index = folder / INDEX
    if not index.exists():
        return [(p.name[: -len(CLEAN)], p.name, p.name[: -len(CLEAN)] + CLOAKED) for p in sorted(folder.glob(f"*{CLEAN}"))]
    try:
        listed = json.loads(index.read_text())
        entries = [(str(e["label"]), str(e["clean"]), str(e["cloaked"])) for e in listed]
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
        raise ValueError(f"{index}: expected a list of {{label, clean, cloaked}} entries ({e})") from None
    for _, *names in entries:
        for name in names:
            if Path(name).name != name:  # the index may only name files inside its folder
                raise ValueError(f"{index}: {name!r} is not a file name inside {folder}")
    return entries


def read_examples(folder: Path | None) -> list[ImageExample]:
    """The pairs in ``folder``; none when the folder is absent (reports then say no images were available)."""
    if folder is None or not folder.is_dir():
        return []
    examples = []
    for label, clean_name, cloaked_name in _entries(folder):
        clean, cloaked = _rgb(folder / clean_name), _rgb(folder / cloaked_name)
        if clean.shape != cloaked.shape:
            raise ValueError(f"{folder / cloaked_name}: size {cloaked.shape[:2]} differs from its clean image's "
                             f"{clean.shape[:2]}")
        examples.append(ImageExample(label, clean, cloaked))
    return examples
