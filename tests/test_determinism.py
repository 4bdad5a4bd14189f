"""Every number is reproducible from its seed: a campaign's results record the seed, the library versions and the
device they were computed with, and the seed reaches the cloaks (another seed, other cloaked pixels).

That two processes with separate caches, output folders and MLflow stores give exactly equal cells (metrics and
per-user numbers, ==) is asserted by test_resume.py (a killed and resumed run against an uninterrupted one, with the
cloaks, victim and trackers used here, seed 0); test_ray.py does the same for the Ray executor against the local
one. This file adds what those do not check, in one real ``fawkes-eval run`` process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "fawkes-eval"
SEEDS = (0, 1)
CLOAKS = ("fawkes-v1.0:low", "noise:low")
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
def test_results_record_seed_versions_and_device_and_the_seed_matters(tmp_path: Path) -> None:
    import numpy
    import torch

    import fawkes_eval
    from fawkes_eval.tracking import environment

    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "FAWKES_EVAL_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    done = subprocess.run([str(CLI), "run", "campaign.yaml", "--out", "out"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = tmp_path / "out" / "determinism"
    rows = json.loads((results / "results.json").read_text())
    assert sorted((r["cell"]["cloak"], r["cell"]["seed"], r["cell"]["tracker"]) for r in rows) == sorted(
        (c, s, t) for c in CLOAKS for s in SEEDS for t in ("1nn", "logreg"))

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
