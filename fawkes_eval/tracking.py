"""MLflow tracking: one experiment per study, a parent run per campaign, a child run per cell.

Everything goes through ``MlflowClient`` with explicit run ids (the fluent API keeps global state and is not
thread-safe). The default store is a local sqlite file in the working directory; ``MLFLOW_TRACKING_URI``
points a team at a shared ``mlflow server``.

A tracking server that cannot be reached is reported before a campaign computes anything (``check_tracking``),
and one that goes away mid-campaign costs retries, not results: every step ``RunLogger`` takes is repeated with
backoff for up to ``FAWKES_EVAL_TRACKING_PATIENCE_S`` seconds before it gives up with ``TrackingUnavailable``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fawkes_eval.results import ResultRow

DEFAULT_DB = "mlflow.db"
PATIENCE_ENV = "FAWKES_EVAL_TRACKING_PATIENCE_S"
DEFAULT_PATIENCE_S = 300.0
PROBE_TIMEOUT_S = 5.0  # the up-front /health check: long enough for a busy server, short enough to fail fast
MAX_RETRY_DELAY_S = 30.0
# MLflow's own HTTP client retries each request for minutes with no word; RunLogger retries whole steps itself
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

_REACHED_URIS: set[str] = set()  # used successfully by this process: a failure there now is an outage, not a typo

T = TypeVar("T")


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used: the message names the URI, the cause and what to do."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def tracking_patience() -> float:
    """Seconds a ``RunLogger`` step keeps retrying an unreachable server (``FAWKES_EVAL_TRACKING_PATIENCE_S``)."""
    text = os.environ.get(PATIENCE_ENV)
    if not text:
        return DEFAULT_PATIENCE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds < math.inf:
        raise ValueError(f"{PATIENCE_ENV} must be a number of seconds >= 0, got {text!r}")
    return seconds


SERVER_ADVICE = "start the server, or unset MLFLOW_TRACKING_URI to log to the local ./mlflow.db"


def _store_advice() -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "point MLFLOW_TRACKING_URI at a writable place, or unset it to log to the local ./mlflow.db"
    return "run from a writable folder, or set MLFLOW_TRACKING_URI to a writable store or a running mlflow server"


def check_tracking(uri: str, writing: bool = True) -> None:
    """Raise ``TrackingUnavailable`` within seconds if ``uri`` cannot be used: an http(s) server that does not
    answer ``GET /health`` (refused, no answer within ``PROBE_TIMEOUT_S``, HTTP 5xx), or, when ``writing``, a
    sqlite / file store whose location cannot be written. Other stores (databricks, SQL servers) are left to
    MLflow."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        problem = _probe_server(uri)
        if problem:
            raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable ({problem}): {SERVER_ADVICE}")
        return
    if not writing:
        return
    if parts.scheme == "sqlite":
        database = uri.removeprefix("sqlite:///").split("?")[0] if uri.startswith("sqlite:///") else ""
        if database in ("", ":memory:"):
            return
        problem = _unwritable(Path(database), Path(database).parent)
    elif parts.scheme in ("file", ""):
        store = Path(url2pathname(parts.path) if parts.scheme else uri)
        problem = _unwritable(store, store)
    else:
        return
    if problem:
        raise TrackingUnavailable(f"MLflow store {uri} cannot be written ({problem}): {_store_advice()}")


def _probe_server(uri: str) -> str:
    """Why ``uri``'s ``/health`` gave no usable answer ('' when it did)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
            return ""
    except urllib.error.HTTPError as e:
        # any answer below 500 means a server is there (a proxy may guard /health); MLflow reports the rest
        return f"HTTP {e.code} from /health" if e.code >= 500 else ""
    except urllib.error.URLError as e:
        reason = e.reason
    except (OSError, http.client.HTTPException) as e:  # a timeout, a dropped connection, not an HTTP answer
        reason = e
    if isinstance(reason, ssl.SSLError):
        return ""  # a TLS server answered; certificates are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS, ...)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    if isinstance(reason, http.client.HTTPException) and not isinstance(reason, OSError):
        return "the port answers, but not in HTTP"
    return str(getattr(reason, "strerror", None) or reason)  # e.g. an unknown host name


def _unwritable(target: Path, folder: Path) -> str:
    """Why ``target`` (a file or folder, created by MLflow if absent) inside ``folder`` cannot be written ('' when
    it can). MLflow creates missing folders, so the nearest existing one must be a writable folder."""
    if target.exists() and not os.access(target, os.W_OK):
        return f"{target} is not writable"
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK):
        return f"folder {existing} is not writable"
    return ""


def _transient_cause(error: BaseException) -> str:
    """A short reason if ``error`` says the server could not be reached or answered 5xx ('' for other errors):
    MLflow wraps the ``requests`` error, so the chain of causes is searched."""
    import requests

    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if any(isinstance(e, requests.exceptions.SSLError) for e in chain):
        return ""  # a certificate problem does not go away by waiting
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    for e in chain:
        if isinstance(e, requests.exceptions.RetryError):  # MLflow's retry codes: 429 and 5xx
            status = re.search(r"too many (\d+) error", str(e))
            return f"HTTP {status.group(1)}" if status else "server error"
    if any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in chain):
        return "no answer in time"
    if any(isinstance(e, requests.exceptions.ConnectionError | ConnectionError) for e in chain):
        return "connection lost"
    return ""


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


@contextlib.contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """For a local sqlite store, one process at a time creates its tables and the experiment (two campaign
    processes starting together on a new store would otherwise both run MLflow's migrations and one fails)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri.removeprefix("sqlite:///").split("?")[0] + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class RunLogger:
    """The MLflow side of one study: the campaign's parent run and one child run per cell.

    Safe to rerun: ``open_parent`` finds the campaign's parent by its fingerprint (tag ``fe.campaign_hash``)
    instead of creating another, and ``log_cell`` logs a cell only if the parent has no finished child with the
    cell's config hash (tag ``fe.config_hash``). A child is marked FINISHED last, so one left RUNNING by a killed
    run is incomplete: it is deleted and logged again. Every call to the server goes through a method here.

    The first ``RunLogger`` of a URI in a process checks it up front (``check_tracking``) and fails at once; after
    that, a server that stops answering is waited for: each method is a step that starts by looking at what the
    server holds, so repeating it after a lost answer neither duplicates a run nor loses one.
    """

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        self.uri = uri or tracking_uri()
        if urlsplit(self.uri).scheme in ("http", "https"):
            for name, value in MLFLOW_HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)  # MLflow reads these per request; a user's setting wins
        self.patience = tracking_patience()
        from mlflow.tracking import MlflowClient

        if self.uri not in _REACHED_URIS:
            check_tracking(self.uri)  # first: a clear error for a store that cannot be used, before any lock
        with _store_creation_lock(self.uri):  # creating the client of a new sqlite store creates its tables
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._retry(f"opening experiment {experiment!r}", lambda: self._experiment(experiment))
        _REACHED_URIS.add(self.uri)

    def _retry(self, step: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` (a step that is safe to repeat), again and again with exponential backoff while the
        server is unreachable, for up to ``self.patience`` seconds; then raise ``TrackingUnavailable``."""
        deadline = time.monotonic() + self.patience
        delay = 1.0
        while True:
            try:
                return attempt()
            except Exception as e:
                cause = _transient_cause(e)
                if not cause:
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TrackingUnavailable(
                        f"MLflow tracking server {self.uri} unreachable ({cause}) for {self.patience:g} s while "
                        f"{step}: start it again and rerun the same command (finished cells are kept on disk and "
                        f"logged then); {PATIENCE_ENV} sets how long to wait"
                    ) from e
                wait = min(delay, left)
                print(f"fawkes-eval: tracking server {self.uri} unreachable ({cause}), retrying in {wait:.0f} s",
                      file=sys.stderr, flush=True)
                time.sleep(wait)
                delay = min(2 * delay, MAX_RETRY_DELAY_S)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        artifact_location = None
        if self.uri.startswith("sqlite:///"):
            # keep artifacts beside the local store rather than in whatever directory mlflow picks
            artifact_location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
        return str(self.client.create_experiment(name, artifact_location=artifact_location))

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

    def _children(self, parent_id: str, config_hash: str | None) -> list[Any]:
        query = f"tags.mlflow.parentRunId = '{parent_id}'"
        if config_hash is not None:
            query += f" and tags.`fe.config_hash` = '{config_hash}'"
        return self._search(query)

    def open_parent(self, name: str, fingerprint: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        """The campaign's parent run, found by ``fingerprint`` (resumed) or created; returns its run id."""
        return self._retry(f"opening the parent run of campaign {name!r}",
                           lambda: self._open_parent(name, fingerprint, tags, params))

    def _open_parent(self, name: str, fingerprint: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        from mlflow.entities import Param, RunTag

        found = self._search(f"tags.`fe.campaign_hash` = '{fingerprint}' and tags.`fe.kind` = 'campaign'")
        if found:
            run = found[0]
            self.client.update_run(run.info.run_id, status="RUNNING")
        else:
            all_tags = {**tags, "fe.kind": "campaign", "fe.campaign_hash": fingerprint}
            run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = str(run.info.run_id)
        # params only where missing: a parent whose creation was cut short gets them when it is resumed
        self.client.log_batch(
            run_id, params=[Param(k, str(v)) for k, v in params.items() if k not in run.data.params],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        return run_id

    def children(self, parent_id: str, config_hash: str | None = None) -> list[Any]:
        """Active child runs of ``parent_id`` (optionally only those of one cell)."""
        return self._retry(f"listing the child runs of {parent_id}", lambda: self._children(parent_id, config_hash))

    def logged_cells(self, parent_id: str) -> set[str]:
        """Config hashes of the cells with a finished child run under ``parent_id``."""
        return {
            str(r.data.tags.get("fe.config_hash")) for r in self.children(parent_id) if r.info.status == "FINISHED"
        }

    def log_cell(self, parent_id: str, row: ResultRow, tags: dict[str, str]) -> str:
        """Log ``row`` as a child run unless it is already there; returns the child's run id."""
        return self._retry(f"logging cell {row.key}", lambda: self._log_cell(parent_id, row, tags))

    def _log_cell(self, parent_id: str, row: ResultRow, tags: dict[str, str]) -> str:
        from mlflow.entities import Metric, Param

        # looking first makes a repeat safe: a child whose creation or last step lost its answer is found here
        for existing in self._children(parent_id, row.key):
            if existing.info.status == "FINISHED":
                return str(existing.info.run_id)
            self.client.delete_run(existing.info.run_id)  # left half-logged by a killed run or a lost connection
        name = " / ".join(str(row.cell[k]) for k in ("scenario", "cloak", "victim", "tracker", "countermeasure")
                          if k in row.cell)
        all_tags = {"mlflow.parentRunId": parent_id, "fe.kind": "cell", "fe.config_hash": row.key, **tags}
        all_tags.update({f"fe.{k}": json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)
                         for k, v in row.cell.items()})
        # few params: the seed, the leak ratio, the countermeasure and its side, and each option of a grid entry
        # ("cloak.steps" = "100")
        params = {k: str(row.cell[k]) for k in ("seed", "leak_ratio") if k in row.cell}
        if row.cell.get("countermeasure", "none") != "none":  # a chain reads "rescale:0.5>jpeg:75"
            params.update({k: str(row.cell[k])[:500] for k in ("countermeasure", "countermeasure_side") if k in row.cell})
        for axis in ("scenario", "cloak", "victim", "tracker"):
            options: dict[str, Any] = row.cell.get(f"{axis}_options", {})  # type: ignore[assignment]
            for option, value in options.items():
                params[f"{axis}.{option}"] = str(value)[:500]
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = str(run.info.run_id)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in row.metrics.items() if math.isfinite(v)],
            params=[Param(k, v) for k, v in params.items()],
        )
        self.client.log_dict(run_id, row.to_dict(), "result.json")
        self.client.set_terminated(run_id)  # last: a FINISHED child is a complete child
        return run_id

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._retry(f"uploading {path.name}", lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self._retry(f"closing run {run_id}", lambda: self.client.set_terminated(run_id, status=status))
