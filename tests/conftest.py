"""Shared fixtures: real photos (bundled LFW sample; full LFW when present), a real aligner, aligned faces, a real
``mlflow server`` that can be stopped and restarted."""

from __future__ import annotations

import os

# Under pytest-xdist every worker gets an equal share of the cores for torch and for the campaigns it starts (they
# inherit the variable): two workers with two OpenMP threads each on two cores spend their time waiting on each
# other's spinning threads. Set before anything imports torch.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.data import Dataset, load_dataset

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "fawkes_eval" / "demo_data" / "lfw_sample"


def find_lfw() -> Path | None:
    """Full LFW from $FAWKES_EVAL_LFW or ../shared/data/lfw beside the checkout."""
    for candidate in (os.environ.get("FAWKES_EVAL_LFW"), REPO.parent / "shared" / "data" / "lfw"):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked ``heavy`` first, each kept in its order: the two workers (``--dist loadfile
    --no-loadscope-reorder``) then start on the long modules and share the short ones at the end, instead of one
    worker finishing a ten-minute module alone."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    root = find_lfw()
    if root is None:
        pytest.skip("full LFW not found: set FAWKES_EVAL_LFW or place it at ../shared/data/lfw")
    return root


@pytest.fixture(scope="session")
def lfw_fixture(lfw_root: Path) -> Dataset:
    """LFW fixture_8x6: 8 identities x 6 images."""
    return load_dataset(lfw_root / "images", lfw_root / "subsets" / "fixture_8x6.txt")


@pytest.fixture(scope="session")
def demo_dataset() -> Dataset:
    """The bundled 10 x 10 LFW sample: always present, even without ../shared."""
    return load_dataset(DEMO_DATA)


@pytest.fixture(scope="session")
def aligner(tmp_path_factory: pytest.TempPathFactory) -> FaceAligner:
    return FaceAligner(cache_dir=tmp_path_factory.mktemp("align-cache"))


@pytest.fixture(scope="session")
def aligned(aligner: FaceAligner) -> Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]:
    """``aligned(dataset, template)`` -> (uint8 faces (N, S, S, 3), identity labels (N,)); memoised."""
    memo: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def get(dataset: Dataset, template: str) -> tuple[np.ndarray, np.ndarray]:
        key = (dataset.manifest_hash(), template)
        if key not in memo:
            faces = [aligner.align(load_photo(r.path), template, str(r.path)).crop for r in dataset.records]
            labels = np.array([r.identity for r in dataset.records])
            faces_arr = np.stack(faces)
            faces_arr.setflags(write=False)  # shared across tests: nobody may mutate it
            memo[key] = (faces_arr, labels)
        return memo[key]

    return get


@pytest.fixture(scope="session")
def assert_separates() -> Callable[[np.ndarray, np.ndarray], None]:
    """``assert_separates(embeddings, labels)``: a zoo model tells identities apart: 3-fold 1-NN accuracy >= 0.95,
    and mean same-identity cosine above mean different-identity cosine by more than 0.3 (rows L2-normalised here)."""
    from fawkes_eval.registry import TRACKERS
    from scenarios.identification import kfold_identification

    def check(embeddings: np.ndarray, labels: np.ndarray) -> None:
        unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        result = kfold_identification(unit, list(labels), lambda: TRACKERS.create("1nn"), folds=3, seed=0)
        assert result.accuracy >= 0.95, result
        same = labels[:, None] == labels[None, :]
        sims = unit @ unit.T
        assert sims[same & ~np.eye(len(labels), dtype=bool)].mean() > sims[~same].mean() + 0.3

    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return _free_port()


class MlflowServer:
    """A real ``mlflow server`` on a loopback port with a sqlite store in ``folder``; ``stop``, ``start`` and
    ``restart`` keep the port and the store, as an administrator restarting a shared server would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = self.uri.rsplit(":", 1)[1]
        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", port, "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "server-artifacts")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "mlflow server exited at start"
            assert time.monotonic() < deadline, "mlflow server did not answer /health within 180 s"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its workers
            self.process.wait(timeout=60)
            self.process = None
        deadline = time.monotonic() + 60
        while self._answers():  # a worker may outlive the main process for a moment, holding the port
            assert time.monotonic() < deadline, f"mlflow server at {self.uri} still answers 60 s after stop"
            time.sleep(0.2)

    def _answers(self) -> bool:
        host, port = self.uri.removeprefix("http://").split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        except OSError:
            return False

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow-server")
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- real runner output, shared by the tests of reports, the regression gate and tracking ----------------------

EVIL = "<img src=x onerror=alert(1)>"  # an identity folder name that is also markup: reports must escape it

GATE_CAMPAIGN = """\
study: gate-tests
campaign: gate
datasets:
  - {name: sample, root: "data:sample"}
protected:
  users: ["<img src=x onerror=alert(1)>", Tony_Blair]
grid:
  cloaks: [none, fawkes-v1.0:low, fawkes-v1.0:high, noise:high, {name: noise:high, bisection_steps: 12}]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet-torch]
  trackers: [1nn, logreg]
  countermeasures: [none, jpeg:50]
protocol:
  n_boot: 500
"""


class CampaignRun:
    """One real ``fawkes-eval run`` of a campaign file: its folder, rows, MLflow store and parent run."""

    def __init__(self, folder: Path, results: Path, uri: str, parent: str, rows: list[Any], stdout: str) -> None:
        self.folder, self.results, self.uri, self.parent, self.rows, self.stdout = folder, results, uri, parent, rows, stdout

    def row(self, **cell: Any) -> Any:
        """The one row whose cell has exactly these values."""
        found = [r for r in self.rows if all(r.cell.get(k) == v for k, v in cell.items())]
        assert len(found) == 1, f"{len(found)} rows match {cell}"
        return found[0]


def run_campaign_file(folder: Path, text: str, name: str = "campaign.yaml") -> CampaignRun:
    """Write ``text`` beside a copy of the bundled sample (``data:sample``, Laura_Bush renamed to ``EVIL``) and run
    it with the CLI in a fresh process: its own cache, its own sqlite MLflow store. The command's output is kept in
    ``<name>.stdout`` so that ``read_campaign_run`` can pick the run up again."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = folder / "data" / "sample"
    if not sample.exists():
        shutil.copytree(DEMO_DATA, sample)
        (sample / "Laura_Bush").rename(sample / EVIL)
    # the copied sample is root ``data``, beside the file's own roots
    with_root = (text.replace("roots:\n", "roots:\n  data: data\n", 1) if re.search(r"^roots:\n", text, re.M)
                 else text.replace("datasets:", "roots:\n  data: data\ndatasets:", 1))
    (folder / name).write_text(with_root)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "FAWKES_EVAL_CACHE": str(folder / "cache")}
    done = subprocess.run([sys.executable, "-m", "fawkes_eval.cli", "run", name], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (folder / f"{name}.stdout").write_text(done.stdout)
    return read_campaign_run(folder, name)


def read_campaign_run(folder: Path, name: str = "campaign.yaml") -> CampaignRun:
    """The finished run of ``folder/name`` that ``run_campaign_file`` left: its rows, store and parent run."""
    from fawkes_eval.results import read_rows

    stdout = (folder / f"{name}.stdout").read_text()
    parent = re.search(r"parent run ([0-9a-f]{32})", stdout)
    assert parent is not None, stdout[-2000:]
    campaign = re.search(r"^campaign: (\S+)", (folder / name).read_text(), re.M)
    assert campaign is not None
    results = folder / "fawkes-eval-out" / campaign.group(1)
    return CampaignRun(folder, results, f"sqlite:///{folder / 'mlflow.db'}", parent.group(1),
                       read_rows(results / "results.json"), stdout)


@pytest.fixture(scope="session")
def gate_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> CampaignRun:
    """The gate campaign once: clean baseline, Fawkes low and high white-box, the noise control (twice, the second
    with another bisection budget), 1-NN and logistic regression, with and without JPEG 50 on the uploads.

    Once per test session, not once per pytest-xdist worker: the first worker that needs it runs it in the folder
    all workers share, under a lock; the others wait for it and read the same run."""
    if worker_id == "master":
        return run_campaign_file(tmp_path_factory.mktemp("gate"), GATE_CAMPAIGN)
    shared = tmp_path_factory.getbasetemp().parent / "gate"
    with FileLock(f"{shared}.lock"):
        if (shared / "campaign.yaml.stdout").exists():
            return read_campaign_run(shared)
        return run_campaign_file(shared, GATE_CAMPAIGN)
