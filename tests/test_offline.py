"""No network access at run time: a whole campaign (load the zoo's weights, align, cloak, embed, track, report,
log to MLflow) runs with every non-loopback connection refused, and tries none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = """\
study: offline-test
campaign: offline
datasets:
  - {name: lfw-sample, root: "bundled:lfw_sample"}
protected: {users: [Laura_Bush]}
grid:
  cloaks: [noise:low]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet, mobileface]
  trackers: [1nn]
protocol: {n_boot: 200}
"""
# Runs the real CLI in a process whose sockets refuse (and record) every connection that leaves this machine.
GUARDED_CLI = """\
import ipaddress, json, socket, sys

attempts = []
connect = socket.socket.connect

def local_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            remote = not ipaddress.ip_address(host).is_loopback
        except ValueError:
            remote = host != "localhost"
        if remote:
            attempts.append(str(address))
            raise OSError(f"network access refused by the test: {address}")
    return connect(self, address)

socket.socket.connect = local_only
from fawkes_eval.cli import main
status = main(sys.argv[1:])
print("ATTEMPTS " + json.dumps(attempts))
sys.exit(status)
"""


@pytest.mark.slow
def test_a_campaign_runs_with_the_network_refused(tmp_path: Path) -> None:
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TQDM_DISABLE": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "FAWKES_EVAL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", GUARDED_CLI, "run", "campaign.yaml", "--out", "out"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    attempts = json.loads(done.stdout.split("ATTEMPTS ", 1)[1].splitlines()[0])
    assert attempts == [], f"tried to reach the network: {attempts}"
    rows = json.loads((tmp_path / "out" / "offline" / "results.json").read_text())
    assert sorted(r["cell"]["victim"] for r in rows) == ["dlib-resnet", "mobileface"]
    assert all(0.0 <= r["metrics"]["others_acc"] <= 1.0 and r["provenance"]["victim_sha256"] for r in rows)
