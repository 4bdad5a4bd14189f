"""What a person running a campaign sees: progress bars with an ETA on a terminal, and messages written through
the bars' writer so that no message lands inside a bar's line. Bars go to stderr and switch themselves off when
it is not a terminal (logs and tests get the messages only)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO


def say(stream: TextIO | None, message: str) -> None:
    """Print ``message`` on ``stream`` (stdout by default) above any live progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=stream or sys.stdout)
    (stream or sys.stdout).flush()


def progress(items: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "it") -> Any:
    """A bar with rate and ETA on a terminal's stderr (none elsewhere); iterate it or call ``update``."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr, disable=None,
                dynamic_ncols=True)
