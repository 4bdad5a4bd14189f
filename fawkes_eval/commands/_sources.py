"""Where result rows come from for ``report`` and ``compare``: a results file, an output folder, or MLflow (a
campaign's parent run id, one cell's run id, or an experiment name)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fawkes_eval.results import ImageExample, ResultRow, read_rows

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
RESULTS_FILE, CONFIG_FILE, CELL_RESULT, EXAMPLES_DIR = "results.json", "config.json", "result.json", "examples"


class SourceError(ValueError):
    """A source that names no results: the message says what was tried."""


@dataclass
class Source:
    origin: str  # what was read, for the report's "measured on" and for error messages
    rows: list[ResultRow]
    config: dict[str, Any] | None = None
    examples: list[ImageExample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why


def load_source(text: str, examples_dir: Path | None = None) -> Source:
    """Rows from ``text``: an existing path (a results JSON file, or a folder holding results.json), else an
    MLflow run id or experiment name on the tracking server (MLFLOW_TRACKING_URI, default ./mlflow.db)."""
    path = Path(text)
    source = _from_path(path) if path.exists() else _from_mlflow(text)
    if examples_dir is not None:
        if not examples_dir.is_dir():
            raise SourceError(f"{examples_dir}: no such examples folder")
        source.examples = _examples(examples_dir)
    if not source.rows:
        raise SourceError(f"{source.origin}: no result rows found")
    return source


def _examples(folder: Path) -> list[ImageExample]:
    from reports.examples import read_examples

    return read_examples(folder)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(f"{path}: not readable JSON ({e})") from None
    return data if isinstance(data, dict) else None


def _from_path(path: Path) -> Source:
    folder = path if path.is_dir() else None
    results = path / RESULTS_FILE if folder else path
    if not results.is_file():
        raise SourceError(f"{path}: a folder without {RESULTS_FILE}")
    rows = read_rows(results)
    base = folder or path.parent
    return Source(str(results), rows, _read_json(base / CONFIG_FILE), _examples(base / EXAMPLES_DIR))


def _from_mlflow(text: str) -> Source:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from fawkes_eval.tracking import check_tracking, tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per cell would bury the output
    uri = tracking_uri()
    check_tracking(uri, writing=False)  # a server that is down: say so now, not after MLflow's minutes of retries
    client = MlflowClient(tracking_uri=uri)
    with tempfile.TemporaryDirectory(prefix="fawkes-eval-source-") as tmp:
        if RUN_ID.match(text):
            try:
                run = client.get_run(text)
            except MlflowException:
                run = None
            if run is not None:
                return _from_run(client, run, Path(tmp), f"MLflow run {text} at {uri}")
        experiment = client.get_experiment_by_name(text)
        if experiment is None:
            raise SourceError(f"{text}: no such file or folder, and no MLflow run or experiment by that name at {uri}")
        return _from_experiment(client, experiment.experiment_id, Path(tmp), f"MLflow experiment {text!r} at {uri}")


def _all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _artifact(client: Any, run_id: str, name: str, tmp: Path) -> Path | None:
    """Download one artifact of a run (file or folder) if it has it."""
    if name not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    return Path(client.download_artifacts(run_id, name, str(tmp / run_id)))


def _rows_of_cells(client: Any, cells: list[Any], tmp: Path, notes: list[str]) -> list[ResultRow]:
    """One row per cell run (``result.json``); a cell logged more than once counts once, its latest run."""
    latest: dict[str, tuple[int, ResultRow]] = {}
    for run in cells:
        path = _artifact(client, run.info.run_id, CELL_RESULT, tmp)
        if path is None:
            notes.append(f"run {run.info.run_id} ({run.info.run_name}) has no {CELL_RESULT}: skipped")
            continue
        try:
            row = ResultRow.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SourceError(f"run {run.info.run_id}: {CELL_RESULT} is not a result row ({e})") from None
        started = int(run.info.start_time or 0)
        if row.key not in latest or started >= latest[row.key][0]:
            latest[row.key] = (started, row)
    return [row for _, row in latest.values()]


def _campaign_files(client: Any, run_id: str, tmp: Path) -> tuple[dict[str, Any] | None, list[ImageExample]]:
    config_path = _artifact(client, run_id, CONFIG_FILE, tmp)
    examples_path = _artifact(client, run_id, EXAMPLES_DIR, tmp)
    return (_read_json(config_path) if config_path else None), (_examples(examples_path) if examples_path else [])


def _from_run(client: Any, run: Any, tmp: Path, origin: str) -> Source:
    run_id = run.info.run_id
    children = _all_runs(client, run.info.experiment_id, f"tags.`mlflow.parentRunId` = '{run_id}'")
    notes: list[str] = []
    if children:  # a campaign: its cells are its child runs
        rows = _rows_of_cells(client, children, tmp, notes)
    elif (results := _artifact(client, run_id, RESULTS_FILE, tmp)) is not None:
        rows = read_rows(results)
    else:  # one cell's run
        rows = _rows_of_cells(client, [run], tmp, notes)
    config, examples = _campaign_files(client, run_id, tmp)
    return Source(origin, rows, config, examples, notes)


def _from_experiment(client: Any, experiment_id: str, tmp: Path, origin: str) -> Source:
    """Every cell of every campaign in the experiment (the latest run of each cell); config and examples from
    the newest campaign run."""
    runs = _all_runs(client, experiment_id)
    cells = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    campaigns = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags),
                       key=lambda r: int(r.info.start_time or 0))
    notes: list[str] = []
    rows = _rows_of_cells(client, cells, tmp, notes)
    config, examples = _campaign_files(client, campaigns[-1].info.run_id, tmp) if campaigns else (None, [])
    return Source(origin, rows, config, examples, notes)
