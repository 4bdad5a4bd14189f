"""MLflow tracking: one experiment per study, a parent run per campaign, a child run per cell.

Everything goes through ``MlflowClient`` with explicit run ids (the fluent API keeps global state and is not
thread-safe). The default store is a local sqlite file in the working directory; ``MLFLOW_TRACKING_URI``
points a team at a shared ``mlflow server``.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from fawkes_eval.results import ResultRow

DEFAULT_DB = "mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def environment() -> dict[str, str]:
    """Library versions and hardware, recorded with every campaign."""
    import numpy
    import torch

    from fawkes_eval import __version__

    return {
        "fawkes_eval": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "platform": platform.platform(),
        "git": git_revision(),
    }


class RunLogger:
    """Creates the parent and child runs of one campaign in one experiment."""

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            artifact_location = None
            if self.uri.startswith("sqlite:///"):
                # keep artifacts beside the local store rather than in whatever directory mlflow picks
                artifact_location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location)

    def start_parent(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        for key, value in params.items():
            self.client.log_param(run.info.run_id, key, value)
        return str(run.info.run_id)

    def log_cell(self, parent_id: str, row: ResultRow, tags: dict[str, str]) -> str:
        name = " / ".join(str(row.cell[k]) for k in ("cloak", "victim", "tracker") if k in row.cell)
        all_tags = {"mlflow.parentRunId": parent_id, "fe.config_hash": row.key, **tags}
        all_tags.update({f"fe.{k}": str(v) for k, v in row.cell.items()})
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = str(run.info.run_id)
        from mlflow.entities import Metric, Param

        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in row.metrics.items() if math.isfinite(v)],
            params=[Param("seed", str(row.cell.get("seed", "")))],
        )
        self.client.log_dict(run_id, row.to_dict(), "result.json")
        self.client.set_terminated(run_id)
        return run_id

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
