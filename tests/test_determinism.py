"""Every number is reproducible from its seed: the same campaign run twice, in two processes with separate caches,
output folders and MLflow stores (so everything is recomputed), gives exactly equal numbers; the results record the
seed, the library versions and the device; and the seed reaches the cloaks (another seed, other cloaked pixels).

The noise control keeps this cheap; test_resume.py does the same two-process equality with Fawkes v1.0 (a killed and
resumed run against an uninterrupted one), and test_ray.py compares the Ray executor with the local one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "fawkes-eval"
SEEDS = (0, 1)
CLOAKS = ("noise:low",)
CAMPAIGN = f"""\
study: determinism-test
campaign: determinism
datasets:
  - {{name: lfw-sample, root: "bundled:lfw_sample"}}
protected: {{users: [Laura_Bush]}}
grid:
  cloaks: [{", ".join(CLOAKS)}]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet]
  trackers: [1nn, logreg]
  seeds: [{", ".join(map(str, SEEDS))}]
protocol: {{n_boot: 200}}
"""


@pytest.mark.slow
def test_same_seed_gives_identical_numbers_across_processes_and_results_record_the_environment(tmp_path: Path) -> None:
    import numpy
    import torch

    import fawkes_eval
    from fawkes_eval.tracking import environment

    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    runs = [_run(tmp_path, name) for name in ("first", "second")]
    for rows in runs:
        assert sorted((r["cell"]["cloak"], r["cell"]["seed"], r["cell"]["tracker"]) for r in rows) == sorted(
            (c, s, t) for c in CLOAKS for s in SEEDS for t in ("1nn", "logreg"))
    first, second = ({r["key"]: (r["metrics"], r["per_user"]) for r in rows} for rows in runs)
    for numbers in (first, second):  # wall-clock seconds are measurements of the machine, not results
        for metrics, _ in numbers.values():
            metrics.pop("sec_per_image")
    assert first == second  # exactly, metric by metric and user by user
    rows = runs[0]
    results = tmp_path / "first" / "out" / "determinism"

    here = environment()
    for row in rows:
        recorded = row["provenance"]["environment"]
        assert recorded["torch"] == torch.__version__ and recorded["numpy"] == numpy.__version__
        assert recorded["fawkes_eval"] == fawkes_eval.__version__
        assert recorded["device"] == here["device"] and recorded["torch_threads"]

    # one cloaking run per (cloak, seed), each with an example crop: another seed cloaks other pixels
    examples = json.loads((results / "examples" / "examples.json").read_text())
    cloaked = {}
    for example in examples:
        cloak = example["label"].split(" / ")[0]
        cloaked.setdefault(cloak, []).append((results / "examples" / example["cloaked"]).read_bytes())
    assert sorted(cloaked) == sorted(CLOAKS)
    for cloak, images in cloaked.items():
        assert len(images) == len(SEEDS) and images[0] != images[1], cloak


def _run(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    folder = tmp_path / name
    folder.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "FAWKES_EVAL_CACHE": str(folder / "cache"), "TQDM_DISABLE": "1"}
    done = subprocess.run([str(CLI), "run", str(tmp_path / "campaign.yaml"), "--out", "out"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads((folder / "out" / "determinism" / "results.json").read_text())
    return rows
