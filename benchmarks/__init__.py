"""Speed of fawkes-eval, measured as ratios against baselines run in the same process.

``python -m benchmarks [--quick] [--out FILE]`` prints and writes one JSON document:

- ``cloak``: images/s of ``fawkes-v1.0:low|mid|high`` against ART's ``FeatureAdversariesPyTorch`` at equal work
  (same surrogate module, step count and batch), the overhead over the model-only bound (steps x one forward and
  backward pass of the surrogate at the same batch), batched against one photo at a time, and a profile of the
  generator's steps (``benchmarks.cloak``);
- ``evaluation``: time and peak memory of a real campaign (align, embed, evaluate) at growing numbers of LFW faces,
  cold and with warm caches, and a rerun that adds one cloak (``benchmarks.evaluation``);
- ``environment``: what it was measured on (hardware, load, threads, library versions, git revision).

Timed assertions live nowhere: figures go to ``benchmarks/RESULTS.md`` with their date, hardware and command.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "fawkes_eval" / "demo_data" / "lfw_sample"


def find_lfw() -> Path | None:
    """Full LFW from $FAWKES_EVAL_LFW or ../shared/data/lfw beside the checkout (as the tests find it)."""
    for candidate in (os.environ.get("FAWKES_EVAL_LFW"), REPO.parent / "shared" / "data" / "lfw"):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_dirty() -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def git_revision(tree: Path) -> str:
    """``TREE @ <short hash>``, with `` + uncommitted changes`` when its work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return f"{tree} @ unknown revision"
    return f"{tree} @ {head or 'unknown revision'}{' + uncommitted changes' if dirty else ''}"


def measured_on() -> dict[str, Any]:
    """Hardware, load, threads and versions: every benchmark figure is reported with this."""
    import torch

    from attacks.surrogates import retain_freed_memory
    from fawkes_eval.tracking import environment

    try:
        from art import __version__ as art_version
    except ImportError:
        art_version = "not installed"
    return {
        **environment(),
        "git_uncommitted_changes": _git_dirty(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        # the cloaks' allocator setting (attacks.surrogates.retain_freed_memory): it moves CPU timings by 10-20 %
        "malloc": "freed memory retained" if retain_freed_memory() else "system defaults",
        "art": art_version,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
