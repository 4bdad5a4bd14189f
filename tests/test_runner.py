"""The audit runner end to end: real cloak, real model, a real MLflow sqlite store, report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fawkes_eval.cli import main
from fawkes_eval.runner import DEMO_DATA, AuditConfig, run_audit


@pytest.mark.slow
def test_audit_logs_parent_and_child_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(tmp_path / "cache"))
    config = AuditConfig(
        data=str(DEMO_DATA), protected_users=("Laura_Bush",), cloaks=("fawkes-v1.0:low", "noise:low"),
        victims=("dlib-resnet",), trackers=("1nn",), n_boot=200, experiment="t", name="small",
    )
    outcome = run_audit(config, tmp_path / "out")
    assert len(outcome.rows) == 2
    for row in outcome.rows:
        assert 0.0 <= row.metrics["psr_ci_low"] <= row.metrics["psr"] <= row.metrics["psr_ci_high"] <= 1.0
        assert row.provenance["n_images"] == 100 and row.provenance["protected_users"] == ["Laura_Bush"]
        assert row.provenance["victim_sha256"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("t")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    assert len(runs) == 3 and len(children) == 2
    assert {c.data.tags["fe.cloak"] for c in children} == {"fawkes-v1.0:low", "noise:low"}
    assert all("psr" in c.data.metrics and c.data.tags["fe.victim"] == "dlib-resnet" for c in children)
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"report.html", "report.md", "results.json", "config.json", "manifests", "examples"} <= artifacts
    saved = json.loads((outcome.out_dir / "results.json").read_text())
    assert [r["metrics"]["psr"] for r in saved] == [r.metrics["psr"] for r in outcome.rows]
    assert sorted(p.name for p in (outcome.out_dir / "cells").glob("*.json")) == sorted(f"{r.key}.json" for r in outcome.rows)
    html = (outcome.out_dir / "report.html").read_text()
    assert "fawkes-v1.0:low" in html
    examples = json.loads((outcome.out_dir / "examples" / "examples.json").read_text())
    assert [e["label"].split(" / ")[0] for e in examples] == ["fawkes-v1.0:low", "noise:low"]


def test_cli_help_and_unknown_component(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out
    code = main(["demo", "--cloaks", "fawkes-v9:mid", "--victims", "dlib-resnet", "--out", "/nonexistent-out"])
    assert code == 2
    assert "unknown cloak 'fawkes-v9'" in capsys.readouterr().err
    assert not Path("/nonexistent-out").exists()  # refused before anything was written


def test_help_imports_no_heavy_backend() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom fawkes_eval.cli import build_parser\nbuild_parser().format_help()\n"
        "print(','.join(m for m in ('torch', 'tensorflow', 'dlib', 'mlflow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
