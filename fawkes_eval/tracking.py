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
        "torch_threads": str(torch.get_num_threads()),
        "platform": platform.platform(),
        "git": git_revision(),
    }


class RunLogger:
    """The MLflow side of one study: the campaign's parent run and one child run per cell.

    Safe to rerun: ``open_parent`` finds the campaign's parent by its fingerprint (tag ``fe.campaign_hash``)
    instead of creating another, and ``log_cell`` logs a cell only if the parent has no finished child with the
    cell's config hash (tag ``fe.config_hash``). A child is marked FINISHED last, so one left RUNNING by a killed
    run is incomplete: it is deleted and logged again. Every call to the server goes through a method here.
    """

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = str(found.experiment_id)
        else:
            artifact_location = None
            if self.uri.startswith("sqlite:///"):
                # keep artifacts beside the local store rather than in whatever directory mlflow picks
                artifact_location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
            self.experiment_id = str(self.client.create_experiment(experiment, artifact_location=artifact_location))

    def _search(self, filter_string: str) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000, page_token=token,
                order_by=["attributes.start_time ASC"],
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def open_parent(self, name: str, fingerprint: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        """The campaign's parent run, found by ``fingerprint`` (resumed) or created; returns its run id."""
        found = self._search(f"tags.`fe.campaign_hash` = '{fingerprint}' and tags.`fe.kind` = 'campaign'")
        if found:
            run_id = str(found[0].info.run_id)
            self.client.update_run(run_id, status="RUNNING")
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
            return run_id
        all_tags = {**tags, "fe.kind": "campaign", "fe.campaign_hash": fingerprint}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        for key, value in params.items():
            self.client.log_param(run.info.run_id, key, value)
        return str(run.info.run_id)

    def children(self, parent_id: str, config_hash: str | None = None) -> list[Any]:
        """Active child runs of ``parent_id`` (optionally only those of one cell)."""
        query = f"tags.mlflow.parentRunId = '{parent_id}'"
        if config_hash is not None:
            query += f" and tags.`fe.config_hash` = '{config_hash}'"
        return self._search(query)

    def logged_cells(self, parent_id: str) -> set[str]:
        """Config hashes of the cells with a finished child run under ``parent_id``."""
        return {
            str(r.data.tags.get("fe.config_hash")) for r in self.children(parent_id) if r.info.status == "FINISHED"
        }

    def log_cell(self, parent_id: str, row: ResultRow, tags: dict[str, str]) -> str:
        """Log ``row`` as a child run unless it is already there; returns the child's run id."""
        from mlflow.entities import Metric, Param

        for existing in self.children(parent_id, row.key):
            if existing.info.status == "FINISHED":
                return str(existing.info.run_id)
            self.client.delete_run(existing.info.run_id)  # left half-logged by a killed run
        name = " / ".join(str(row.cell[k]) for k in ("cloak", "victim", "tracker", "countermeasure") if k in row.cell)
        all_tags = {"mlflow.parentRunId": parent_id, "fe.kind": "cell", "fe.config_hash": row.key, **tags}
        all_tags.update({f"fe.{k}": str(v) for k, v in row.cell.items()})
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = str(run.info.run_id)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in row.metrics.items() if math.isfinite(v)],
            params=[Param(k, str(row.cell[k])) for k in ("seed", "leak_ratio") if k in row.cell],
        )
        self.client.log_dict(run_id, row.to_dict(), "result.json")
        self.client.set_terminated(run_id)  # last: a FINISHED child is a complete child
        return run_id

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
