"""Durable files: atomic writes, and a content-addressed store of numpy arrays checked on every read.

A campaign can be killed at any moment; whatever it left on disk must be either whole or absent. Every write
goes to a temporary file beside its target and is renamed into place (``os.replace`` is atomic on POSIX), and
every array entry carries the sha256 of its arrays, so a damaged entry reads as missing and is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DIGEST = "__sha256__"


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` so that readers see the old file, or the new one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def content_digest(*parts: str | bytes | np.ndarray) -> str:
    """sha256 over strings, bytes and arrays (dtype and shape included): a cache key."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"array|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
        else:
            data = part.encode() if isinstance(part, str) else part
            h.update(f"{type(part).__name__}|{len(data)}|".encode())
            h.update(data)
    return h.hexdigest()


class ArrayStore:
    """Named numpy arrays stored by key under ``root/<kind>/``: ``put`` writes atomically, ``get`` verifies.

    Only plain (non-object) arrays are stored, and they are read with ``allow_pickle=False``.
    """

    def __init__(self, root: Path, kind: str) -> None:
        self.root = Path(root) / kind

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None when absent, unreadable or failing the digest."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        stored = arrays.pop(_DIGEST, None)
        if stored is None or str(stored) != _digest(arrays):
            return None
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if _DIGEST in arrays or any(np.asarray(a).dtype == object for a in arrays.values()):
            raise ValueError(f"ArrayStore.put({key}): object arrays and the name {_DIGEST!r} are not storable")
        plain = {name: np.asarray(a) for name, a in arrays.items()}
        payload = {**plain, _DIGEST: np.array(_digest(plain))}
        atomic_write(self.path(key), lambda f: np.savez(f, **payload))  # type: ignore[arg-type]
