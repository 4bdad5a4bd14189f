"""The Ray executor (a local Ray instance) gives the numbers of the local executor, with caches and MLflow stores
kept apart so that nothing computed by one run is reused by the other: the same cloaked pixels bit for bit, the
same protocol outcomes exactly, and the same perceptual summaries up to float rounding (Ray runs each task on one
thread, and torch's SSIM sums in a thread-count-dependent order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.cache import ArrayStore
from fawkes_eval.campaign import load_campaign
from fawkes_eval.executors import LocalExecutor, RayExecutor
from fawkes_eval.results import ResultRow
from fawkes_eval.runner import run_campaign

pytestmark = pytest.mark.heavy

CAMPAIGN = """\
study: ray-test
campaign: ray
datasets:
  - {name: lfw-sample, root: "bundled:lfw_sample"}
protected: {users: [Laura_Bush]}
grid:
  cloaks: [fawkes-v1.0:low, noise:low]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet]
  trackers: [1nn, logreg]
protocol: {n_boot: 200}
"""


PROTOCOL = ("psr", "psr_ci_low", "psr_ci_high", "top5", "others_acc")
PERCEPTUAL = ("dssim", "photo_dssim", "psnr", "linf")


def _outcomes(rows: list[ResultRow]) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    return [(r.key, {k: r.metrics[k] for k in PROTOCOL}, r.per_user) for r in rows]


@pytest.mark.slow
def test_ray_and_local_executors_give_identical_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from mlflow.tracking import MlflowClient

    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    campaign = load_campaign(tmp_path / "campaign.yaml")
    outcomes = {}
    for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor(num_cpus=2))):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / name / 'store.db'}")
        monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / name / "cache"))
        outcomes[name] = run_campaign(campaign, tmp_path / name / "out", executor)
        assert not outcomes[name].failed and outcomes[name].ran == 4
    local, ray = outcomes["local"].rows, outcomes["ray"].rows
    assert _outcomes(ray) == _outcomes(local)
    for a, b in zip(ray, local, strict=True):
        assert [a.metrics[k] for k in PERCEPTUAL] == pytest.approx([b.metrics[k] for k in PERCEPTUAL], rel=1e-12)

    # the Ray workers cloaked for themselves, and produced the very same pixels
    stores = {name: ArrayStore(tmp_path / name / "cache", "cloaks") for name in outcomes}
    entries = sorted(p.stem for p in stores["local"].root.rglob("*.npz"))
    assert len(entries) == 2 and entries == sorted(p.stem for p in stores["ray"].root.rglob("*.npz"))
    for key in entries:
        mine, theirs = stores["local"].get(key), stores["ray"].get(key)
        assert mine is not None and theirs is not None
        assert np.array_equal(mine["faces"], theirs["faces"]) and np.array_equal(mine["dssim"], theirs["dssim"])

    # the workers logged their cells to MLflow under the driver's parent run
    ray_run = outcomes["ray"]
    client = MlflowClient(ray_run.tracking_uri)
    experiment = client.get_experiment_by_name("ray-test")
    assert experiment is not None
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{ray_run.parent_run_id}'")
    assert sorted(c.data.tags["fe.config_hash"] for c in children) == sorted(r.key for r in ray_run.rows)
