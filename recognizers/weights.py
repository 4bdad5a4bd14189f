"""Where the shipped weights live, and the sha256 check every model runs before it loads a file."""

from __future__ import annotations

from pathlib import Path

from fawkes_eval.data import sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"


class WeightsError(RuntimeError):
    """A weight file is missing or does not match its recorded sha256; the message names the file."""


def verified(path: Path, expected_sha256: str) -> Path:
    """Return ``path`` after checking that it exists and hashes to ``expected_sha256``."""
    if not path.is_file():
        raise WeightsError(f"{path}: weight file missing")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise WeightsError(f"{path}: sha256 {actual} does not match the expected {expected_sha256}; refusing to load")
    return path
