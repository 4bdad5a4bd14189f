"""The benchmark runner's quick path end to end on the bundled sample: the JSON it writes has every figure, and
the campaign rerun with one new cloak computes only that cloak's cell. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "FAWKES_EVAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--modes", "low,mid", "--out", str(out),
         "--before-tree", str(REPO), "--throughput", "demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report

    env_info = report["measured_on"]
    for key in ("date_utc", "cpu", "torch", "art", "torch_threads", "load_average_1m", "git"):
        assert key in env_info

    cloak = report["cloak"]
    assert [m["cloak"] for m in cloak["modes"]] == ["fawkes-v1.0:low", "fawkes-v1.0:mid"]
    for m in cloak["modes"]:
        assert m["steps"] == 2 and m["batch"] == 2
        for key in ("fawkes_seconds", "art_seconds", "bound_seconds", "bound_nchw_seconds"):
            assert m[key] > 0
        assert m["speedup_vs_art"] == pytest.approx(m["art_seconds"] / m["fawkes_seconds"], rel=1e-3)
        assert m["over_bound"] == pytest.approx(m["fawkes_seconds"] / m["bound_seconds"], rel=1e-3)
        assert m["over_bound_block"] == pytest.approx(m["fawkes_seconds"] / m["bound_block_seconds"], rel=1e-3)
        assert m["fawkes_seconds"] == pytest.approx(min(m["fawkes_seconds_all"]), rel=1e-3)
        assert m["before_seconds"] > 0 and m["speedup_vs_before"] == pytest.approx(
            m["before_seconds"] / m["fawkes_seconds"], rel=1e-3)
    batching = cloak["batching"]
    assert batching["one_at_a_time_faces"] == 1 and batching["speedup"] > 0
    assert cloak["profile"] and all(0 <= op["share"] <= 1 for op in cloak["profile"])
    assert any("convolution" in op["op"] for op in cloak["profile"])
    assert all(isinstance(goal["met"], bool) for goal in report["goals"].values())

    evaluation = report["evaluation"]
    assert evaluation["alignment"]["photos"] == 30
    runs = {run["label"]: run for run in evaluation["runs"]}
    assert list(runs) == ["cold", "warm", "rerun+noise:mid"]
    assert runs["cold"]["cells_run"] == 1 and runs["warm"]["cells_run"] == 1
    assert runs["rerun+noise:mid"]["cells_run"] == 1 and runs["rerun+noise:mid"]["cells_reused"] == 1
    for run in runs.values():
        assert run["photos"] == 30 and run["photos_skipped"] == 0
        assert run["peak_rss_mib"] >= run["rss_before_mib"] > 0

    throughput = report["throughput"]
    runs_t = {(r["campaign"], r["tree"]): r for r in throughput["runs"]}
    assert set(runs_t) == {("demo", "before"), ("demo", "this")}
    for r in runs_t.values():
        assert r["photos"] == 100 and 0 < r["photos_cloaked"] < r["photos"]
        assert r["photos_embedded"] >= r["photos"] + r["photos_cloaked"] - 5  # a few photos may hold no face
        assert r["photos_per_s"] == pytest.approx((r["photos_cloaked"] + r["photos_embedded"]) / r["seconds"], rel=1e-3)
    assert throughput["speedup_vs_before"]["demo"] > 0
