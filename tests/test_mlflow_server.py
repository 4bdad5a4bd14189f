"""A campaign logged to a real ``mlflow server`` (sqlite backend, loopback port): the DESIGN.md section 4 layout,
read back through ``MlflowClient``, and a rerun that resumes the same parent run and logs nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MlflowServer

from fawkes_eval.campaign import load_campaign
from fawkes_eval.runner import run_campaign

CAMPAIGN = """\
study: server-test
campaign: served
datasets:
  - {name: lfw-sample, root: "bundled:lfw_sample"}
protected: {users: [Laura_Bush]}
grid:
  cloaks: [noise:low]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet]
  trackers: [1nn, logreg]
protocol: {n_boot: 200}
"""


@pytest.mark.slow
def test_campaign_on_a_shared_mlflow_server(mlflow_server: MlflowServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    campaign = load_campaign(tmp_path / "campaign.yaml")
    outcome = run_campaign(campaign, tmp_path / "out")
    assert outcome.tracking_uri == mlflow_server.uri and outcome.ran == 2

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("server-test")  # one experiment per study
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "served"
    assert parent.data.tags["fe.kind"] == "campaign"
    assert parent.data.tags["fe.campaign_hash"] == campaign.fingerprint() and parent.data.tags["fe.git"]
    parent_artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"config.json", "campaign.yaml", "results.json", "report.html", "report.md", "manifests"} <= parent_artifacts
    config = json.loads(Path(client.download_artifacts(outcome.parent_run_id, "config.json", str(tmp_path))).read_text())
    assert [c["name"] for c in config["grid"]["cloaks"]] == ["noise:low"]  # the resolved campaign travels with the parent run

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    assert len(runs) == 3 and len(children) == 2
    by_key = {row.key: row for row in outcome.rows}
    for child in children:
        tags = child.data.tags
        row = by_key[tags["fe.config_hash"]]
        assert tags["fe.kind"] == "cell" and tags["fe.cloak"] == "noise:low" and tags["fe.victim"] == "dlib-resnet"
        # the noise control uses no surrogate, so its cell names none (and is not repeated per surrogate set)
        assert tags["fe.tracker"] == row.cell["tracker"] and tags["fe.surrogates"] == ""
        assert tags["fe.victim_sha256"].startswith("dlib_face_recognition_resnet_model_v1.dat=")
        assert tags["fe.victim_license"] and tags["fe.surrogate_license"] == ""
        assert tags["fe.git"] == parent.data.tags["fe.git"] and tags["fe.fawkes_eval"]
        assert child.data.metrics["psr"] == row.metrics["psr"] and "others_acc" in child.data.metrics
        assert child.data.params == {"seed": "0", "leak_ratio": "0.0"}  # few params: the config is in the tags
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["result.json"]

    rerun = run_campaign(campaign, tmp_path / "out")  # resumes the same parent run; logs nothing again
    assert rerun.parent_run_id == outcome.parent_run_id and rerun.ran == 0 and rerun.reused == 2
    assert len(client.search_runs([experiment.experiment_id])) == 3
