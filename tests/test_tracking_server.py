"""Tracking server trouble: an unusable MLFLOW_TRACKING_URI stops a campaign before anything is computed, with a
clear message; a real ``mlflow server`` restarted mid-campaign costs retries, never a result or a duplicate run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import MlflowServer

from fawkes_eval.results import ResultRow
from fawkes_eval.tracking import (
    MLFLOW_HTTP_DEFAULTS,
    PATIENCE_ENV,
    RunLogger,
    TrackingUnavailable,
    check_tracking,
    tracking_patience,
)

REPO = Path(__file__).resolve().parent.parent
FAWKES_EVAL = Path(sys.executable).parent / "fawkes-eval"
EXPERIMENT = "tracking-trouble"


@pytest.fixture(autouse=True)
def _mlflow_http_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """RunLogger sets MLflow's HTTP settings in this process where unset; leave the process as it was."""
    for name in MLFLOW_HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    yield
    for name in MLFLOW_HTTP_DEFAULTS:
        os.environ.pop(name, None)


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One local store for the module: creating its tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def _row(cloak: str, tracker: str) -> ResultRow:
    cell = {"scenario": "protection", "dataset": "lfw-sample", "cloak": cloak, "surrogates": "dlib-resnet-torch",
            "victim": "dlib-resnet", "tracker": tracker, "countermeasure": "none", "leak_ratio": 0.0, "seed": 0}
    metrics = {"psr": 0.75, "psr_ci_low": 0.5, "psr_ci_high": 1.0, "others_acc": 0.9}
    return ResultRow(cell, metrics, {"Laura_Bush": 0.75}, {"campaign": "trouble"})


def _finished_children(uri: str, parent_id: str) -> list[str]:
    """Config hashes of the active child runs of ``parent_id``, each FINISHED (an unfinished one fails)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert [c.info.status for c in children] == ["FINISHED"] * len(children)
    return sorted(c.data.tags["fe.config_hash"] for c in children)


def _fawkes_eval(args: list[str], uri: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "FAWKES_EVAL_CACHE": str(tmp_path / "cache")}
    return subprocess.run([str(FAWKES_EVAL), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_unreachable_server_stops_the_campaign_before_any_cell(unused_port: int, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{unused_port}"
    done = _fawkes_eval(["run", str(REPO / "campaigns" / "tiny.yaml"), "--out", str(tmp_path / "out")], uri, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"fawkes-eval: error: MLflow tracking server {uri} is unreachable (connection refused)" in done.stderr
    assert "unset MLFLOW_TRACKING_URI" in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "out").glob("*/cells/*.json"))  # no cell was computed

    report = _fawkes_eval(["report", EXPERIMENT, "--out", str(tmp_path / "report")], uri, tmp_path)
    assert report.returncode == 2 and f"{uri} is unreachable" in report.stderr and "Traceback" not in report.stderr


def test_unwritable_sqlite_store_stops_the_campaign_before_any_cell(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    done = _fawkes_eval(["run", str(REPO / "campaigns" / "tiny.yaml"), "--out", str(tmp_path / "out")], uri, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"MLflow store {uri} cannot be written ({tmp_path / 'a-file'} is not a folder)" in done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "out").glob("*/cells/*.json"))


def test_check_tracking_on_local_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_tracking(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")  # MLflow creates the missing folder
    check_tracking((tmp_path / "mlruns").as_uri())
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(TrackingUnavailable, match="is not a folder"):
        check_tracking((tmp_path / "a-file" / "mlruns").as_uri())
    check_tracking(f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}", writing=False)  # reading: left to MLflow
    monkeypatch.setenv(PATIENCE_ENV, "soon")
    with pytest.raises(ValueError, match=f"{PATIENCE_ENV} must be a number of seconds"):
        tracking_patience()


@pytest.mark.parametrize(("step", "lost"), [
    ("parent", "create_run"), ("parent", "log_batch"),
    ("cell", "create_run"), ("cell", "log_batch"), ("cell", "set_terminated"),
])
def test_a_lost_answer_never_duplicates_a_run(step: str, lost: str, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The server did the work but its answer never came: the repeated step finds the work instead of redoing it."""
    logger = RunLogger(EXPERIMENT, sqlite_uri)
    fingerprint = f"lost-{step}-{lost}"
    real = getattr(logger.client, lost)
    answered: list[str] = []

    def answer_lost_once(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        if not answered:
            answered.append(lost)
            raise requests.exceptions.ConnectionError("connection reset before the answer arrived")
        return result

    if step == "parent":
        monkeypatch.setattr(logger.client, lost, answer_lost_once)
    parent = logger.open_parent("trouble", fingerprint, {"fe.git": "test"}, {"n_cells": 1})
    if step == "cell":
        monkeypatch.setattr(logger.client, lost, answer_lost_once)
    row = _row("noise:low", "1nn")
    child = logger.log_cell(parent, row, {})
    assert answered == [lost] and "retrying in 1 s" in capsys.readouterr().err
    assert _finished_children(sqlite_uri, parent) == [row.key]
    assert logger.log_cell(parent, row, {}) == child  # and a rerun logs nothing again
    parents = logger.client.search_runs([logger.experiment_id], f"tags.`fe.campaign_hash` = '{fingerprint}'")
    assert len(parents) == 1 and parents[0].data.params == {"n_cells": "1"}


@pytest.mark.slow
def test_a_server_restart_mid_campaign_costs_retries_not_results(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PATIENCE_ENV, "120")
    logger = RunLogger(EXPERIMENT, mlflow_server.uri)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # our retries, not minutes of MLflow's own
    parent = logger.open_parent("trouble", "fingerprint-1", {"fe.git": "test"}, {"n_cells": 2})
    rows = [_row("noise:low", "1nn"), _row("noise:low", "logreg")]
    logger.log_cell(parent, rows[0], {})

    failures: list[BaseException] = []

    def restart_later() -> None:
        try:
            time.sleep(3)
            mlflow_server.start()  # same port, same store
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            failures.append(e)

    mlflow_server.stop()
    restarter = threading.Thread(target=restart_later)
    restarter.start()
    logger.log_cell(parent, rows[1], {})  # sent while the server is down
    restarter.join()
    assert not failures
    err = capsys.readouterr().err
    assert f"tracking server {mlflow_server.uri} unreachable (connection refused), retrying in 1 s" in err
    assert _finished_children(mlflow_server.uri, parent) == sorted(r.key for r in rows)

    # a server that stays down: a new logger (as each cell makes) waits, then gives up naming the server
    mlflow_server.stop()
    monkeypatch.setenv(PATIENCE_ENV, "2")
    with pytest.raises(TrackingUnavailable, match=f"MLflow tracking server {mlflow_server.uri} unreachable "
                                                  r"\(connection refused\) for 2 s while opening experiment"):
        RunLogger(EXPERIMENT, mlflow_server.uri)
