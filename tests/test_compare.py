"""The regression gate: pairing, differences with CIs, tolerances and the exit status, on the runner's own rows
(``gate_run`` in conftest: a real campaign on the bundled sample). Where a test needs a second cloak version it
relabels real rows, so the rows keep exactly the shape the runner writes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import CampaignRun

from fawkes_eval.cli import main
from fawkes_eval.results import ResultRow, write_rows
from reports.compare import (
    DISTORTION_RISE,
    PROTECTION_DROP,
    Tolerances,
    compare_rows,
    compared_axes,
    comparison_markdown,
    difference_ci,
    paired_bootstrap,
)

pytestmark = pytest.mark.heavy


def as_version(rows: list[ResultRow], version: str) -> list[ResultRow]:
    """The same rows under another cloak version's name (``fawkes-v1.0`` -> ``version``)."""
    return [replace(r, cell={**r.cell, "cloak": r.cell["cloak"].replace("fawkes-v1.0", version)}) for r in rows]


def cloak_rows(run: CampaignRun, cloak: str, **cell: object) -> list[ResultRow]:
    return [r for r in run.rows if r.cell["cloak"] == cloak and all(r.cell.get(k) == v for k, v in cell.items())]


@pytest.mark.slow
def test_cloak_versions_pair_mode_by_mode(gate_run: CampaignRun) -> None:
    fawkes = [r for r in gate_run.rows if r.cell["cloak"].startswith("fawkes-v1.0:")]
    base, cand = as_version(fawkes, "fawkes-v1.0-early"), fawkes
    assert compared_axes(base, cand) == ("cloak",)
    result = compare_rows(base, cand, Tolerances())
    pairs = {(c.baseline.cell["cloak"], c.candidate.cell["cloak"]) for c in result.cells}
    assert pairs == {("fawkes-v1.0-early:low", "fawkes-v1.0:low"), ("fawkes-v1.0-early:high", "fawkes-v1.0:high")}
    assert len(result.cells) == 8 and not result.failed and not result.only_baseline and not result.only_candidate
    assert all(c.paired and c.psr == (0.0, 0.0, 0.0) for c in result.cells)  # the same outcomes: no difference


@pytest.mark.slow
def test_significant_protection_drop_fails_and_tolerance_and_significance_decide(gate_run: CampaignRun) -> None:
    high = cloak_rows(gate_run, "fawkes-v1.0:high", tracker="1nn", countermeasure="none")
    low = [replace(r, cell={**r.cell, "cloak": "fawkes-v1.0:high"})  # as if a new release of high were as weak as low
           for r in cloak_rows(gate_run, "fawkes-v1.0:low", tracker="1nn", countermeasure="none")]
    (cell,) = compare_rows(high, low, Tolerances(max_psr_drop=0.1)).cells
    drop = cell.candidate.metrics["psr"] - cell.baseline.metrics["psr"]
    assert drop < -0.1 and cell.paired and cell.psr[0] == pytest.approx(drop) and cell.psr[2] < 0.0
    assert cell.failures == (PROTECTION_DROP,)
    assert not compare_rows(high, low, Tolerances(max_psr_drop=1.0)).failed  # within a generous tolerance
    # the noise control against the clean baseline: a PSR change inside its CI is not significant
    none = cloak_rows(gate_run, "none", tracker="1nn", countermeasure="none")
    noise = [r for r in cloak_rows(gate_run, "noise:high", tracker="1nn", countermeasure="none") if not r.cell["cloak_options"]]
    (control,) = compare_rows(none, noise, Tolerances(max_psr_drop=0.0, max_dssim_rise=1.0)).cells
    assert control.psr[1] <= 0.0 <= control.psr[2] and not control.failures


@pytest.mark.slow
def test_distortion_rise_beyond_tolerance_fails(gate_run: CampaignRun) -> None:
    low = cloak_rows(gate_run, "fawkes-v1.0:low", tracker="1nn", countermeasure="none")
    high = cloak_rows(gate_run, "fawkes-v1.0:high", tracker="1nn", countermeasure="none")
    rise = high[0].metrics["dssim"] - low[0].metrics["dssim"]
    assert rise > 0.005  # high spends a DSSIM budget of 0.017, low one of 0.004
    by = ("cloak",)
    assert compare_rows(low, high, Tolerances(max_dssim_rise=0.001, max_psr_drop=1.0), by=by).cells[0].failures == (
        DISTORTION_RISE,)
    assert not compare_rows(low, high, Tolerances(max_dssim_rise=rise + 0.001), by=by).failed
    assert not compare_rows(high, low, Tolerances(max_dssim_rise=0.001, max_psr_drop=1.0), by=by).failed  # less is fine


@pytest.mark.slow
def test_unpaired_and_ambiguous_cells(gate_run: CampaignRun) -> None:
    base = cloak_rows(gate_run, "fawkes-v1.0:low", countermeasure="none")  # 1nn and logreg
    cand = cloak_rows(gate_run, "fawkes-v1.0:high", countermeasure="none", tracker="1nn")
    result = compare_rows(base, cand, Tolerances())
    assert len(result.cells) == 1 and [r.cell["tracker"] for r in result.only_baseline] == ["logreg"]
    assert "Only in the baseline" in comparison_markdown(result)
    with pytest.raises(ValueError, match="no cell axis named clok; the axes are: cloak"):
        compare_rows(base, cand, Tolerances(), by=("clok",))
    with pytest.raises(ValueError, match="two cells pair as the same cell"):
        compare_rows(base, cloak_rows(gate_run, "fawkes-v1.0:high", countermeasure="none"), Tolerances(),
                     by=("cloak", "tracker"))


@pytest.mark.slow
def test_rows_of_other_users_fall_back_to_independent_intervals(gate_run: CampaignRun) -> None:
    """Cells measured on other users cannot be paired query by query; the verdict says so."""
    base = cloak_rows(gate_run, "fawkes-v1.0:high", tracker="1nn", countermeasure="none")
    other = [replace(r, outcomes={"Someone_Else": next(iter(r.outcomes.values()))}) for r in base]
    (cell,) = compare_rows(base, other, Tolerances()).cells
    assert not cell.paired and "not the same users and queries: CI from the two cells' intervals" in cell.notes


def test_difference_ci_and_paired_bootstrap() -> None:
    diff, low, high = difference_ci((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))
    assert diff == pytest.approx(0.2) and low == pytest.approx(0.2 - 0.02**0.5) and high == pytest.approx(0.2 + 0.02**0.5)
    constant = paired_bootstrap([0.1, 0.5, 0.9], [0.2, 0.6, 1.0])
    assert (constant.value, constant.low, constant.high) == pytest.approx((0.1, 0.1, 0.1))
    spread = paired_bootstrap([0.0] * 4, [0.0, 0.2, 0.4, 0.6], seed=1)
    assert spread.value == pytest.approx(0.3) and spread.low < 0.3 < spread.high and spread.n_groups == 4
    with pytest.raises(ValueError):
        paired_bootstrap([0.1], [0.1, 0.2])


@pytest.mark.slow
def test_cli_exit_codes_on_runner_files(gate_run: CampaignRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    results = str(gate_run.results / "results.json")
    high, low = ["--baseline-filter", "cloak=fawkes-v1.0:high"], ["--candidate-filter", "cloak=fawkes-v1.0:low"]
    verdicts = tmp_path / "verdicts.json"
    assert main(["compare", results, results, *high, *low, "--json", str(verdicts)]) == 1
    out = capsys.readouterr().out
    assert "PROTECTION DROP" in out and "paired bootstrap over the same users and query photos" in out
    saved = json.loads(verdicts.read_text())
    assert saved["failed"] and saved["by"] == ["cloak"] and len(saved["cells"]) == 4
    assert main(["compare", results, results, *high, *low, "--max-psr-drop", "1", "--max-dssim-rise", "1"]) == 0
    assert main(["compare", results, results, *high, *low, "--by", "victim"]) == 2  # the cloak must match: no pair
    # a results folder, a results file, and the campaign's MLflow parent run are the same source
    write_rows(gate_run.rows, tmp_path / "copy.json")
    assert main(["compare", str(gate_run.results), str(tmp_path / "copy.json")]) == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gate_run.uri)
    assert main(["compare", gate_run.parent, gate_run.parent]) == 0
    out = capsys.readouterr().out
    assert f"Verdict: PASS: 0 of {len(gate_run.rows)}" in out and f"MLflow run {gate_run.parent}" in out
    assert main(["compare", results, str(tmp_path / "nowhere.json")]) == 2
    assert "nowhere.json: no such file" in capsys.readouterr().err
