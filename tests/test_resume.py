"""A campaign killed mid-run (a real subprocess, SIGKILL) resumes with the same command: the final results equal
those of an uninterrupted run, and MLflow holds each cell once under one parent run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.heavy

CAMPAIGN = """\
study: resume-test
campaign: resume
datasets:
  - {name: lfw-sample, root: "bundled:lfw_sample"}
protected: {users: [Laura_Bush]}
grid:
  cloaks: [noise:low, fawkes-v1.0:low]   # the noise cells finish first; the kill lands while Fawkes cloaks
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet]
  trackers: [1nn, logreg]
protocol: {n_boot: 200}
"""
N_CELLS = 4
CLI = [sys.executable, "-m", "fawkes_eval.cli"]


def _env(folder: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'store.db'}",
            "FAWKES_EVAL_CACHE": str(folder / "cache"), "TQDM_DISABLE": "1"}


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, "run", "campaign.yaml"], cwd=folder, env=_env(folder), capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _comparable(folder: Path) -> list[dict[str, Any]]:
    """The numbers of every cell, without the wall-clock timing (the one measurement that may differ)."""
    rows = json.loads((folder / "fawkes-eval-out" / "resume" / "results.json").read_text())
    return [{"key": r["key"], "cell": r["cell"], "per_user": r["per_user"],
             "metrics": {k: v for k, v in r["metrics"].items() if k != "sec_per_image"}} for r in rows]


def _setup(folder: Path) -> Path:
    folder.mkdir()
    (folder / "campaign.yaml").write_text(CAMPAIGN)
    return folder


@pytest.mark.slow
def test_killed_campaign_resumes_without_duplicates(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    killed = _setup(tmp_path / "killed")
    cells = killed / "fawkes-eval-out" / "resume" / "cells"
    proc = subprocess.Popen([*CLI, "run", "campaign.yaml"], cwd=killed, env=_env(killed),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 1200
        while proc.poll() is None and time.monotonic() < deadline and not list(cells.glob("*.json")):
            time.sleep(0.05)
        assert proc.poll() is None, "the campaign ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done_at_kill = len(list(cells.glob("*.json")))
    assert 1 <= done_at_kill < N_CELLS

    rerun = _run(killed)
    assert f"{done_at_kill} already done, {N_CELLS - done_at_kill} to run" in rerun.stdout
    again = _run(killed)  # a finished campaign: everything is skipped, nothing is logged again
    assert f"{N_CELLS} cells: 0 run, {N_CELLS} skipped (already done), 0 failed" in again.stdout

    whole = _setup(tmp_path / "whole")
    _run(whole)
    assert _comparable(killed) == _comparable(whole)

    client = MlflowClient(f"sqlite:///{killed / 'store.db'}")
    experiment = client.get_experiment_by_name("resume-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fe.kind") == "campaign"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1 == N_CELLS
    assert sorted(c.data.tags["fe.config_hash"] for c in children) == sorted(r["key"] for r in _comparable(killed))
    assert all(c.info.status == "FINISHED" and "psr" in c.data.metrics for c in children)
