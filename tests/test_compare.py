"""The regression gate: pairing, differences with CIs, tolerances and the exit status, on crafted and real rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def row(cloak: str, victim: str = "dlib-resnet", psr: float = 0.9, half_width: float = 0.05, dssim: float = 0.010,
        tracker: str = "1nn", seed: int = 0, params: str = "{}") -> ResultRow:
    metrics = {"psr": psr, "psr_ci_low": max(0.0, psr - half_width), "psr_ci_high": min(1.0, psr + half_width),
               "top5": psr, "others_acc": 0.98, "dssim": dssim, "psnr": 40.0, "sec_per_image": 1.0}
    cell = {"scenario": "protection", "cloak": cloak, "victim": victim, "tracker": tracker, "countermeasure": "none",
            "seed": seed, "cloak_params": params}
    return ResultRow(cell, metrics, {"Tony_Blair": psr}, {"dataset": "lfw_sample"})


def versions(early: dict[str, float], current: dict[str, float],
             half_width: float = 0.05) -> tuple[list[ResultRow], list[ResultRow]]:
    """Rows of fawkes-v1.0-early and fawkes-v1.0 at the same modes; values are PSRs per mode."""
    base = [row(f"fawkes-v1.0-early:{mode}", psr=psr, half_width=half_width) for mode, psr in early.items()]
    cand = [row(f"fawkes-v1.0:{mode}", psr=psr, half_width=half_width) for mode, psr in current.items()]
    return base, cand


def test_cloak_versions_pair_mode_by_mode() -> None:
    base, cand = versions({"low": 0.2, "mid": 0.9}, {"low": 0.25, "mid": 0.95})
    assert compared_axes(base, cand) == ("cloak",)
    result = compare_rows(base, cand, Tolerances())
    pairs = {(c.baseline.cell["cloak"], c.candidate.cell["cloak"]) for c in result.cells}
    assert pairs == {("fawkes-v1.0-early:low", "fawkes-v1.0:low"), ("fawkes-v1.0-early:mid", "fawkes-v1.0:mid")}
    assert not result.failed and not result.only_baseline and not result.only_candidate


def test_significant_protection_drop_fails_and_noise_does_not() -> None:
    base, cand = versions({"mid": 0.9}, {"mid": 0.5}, half_width=0.05)
    result = compare_rows(base, cand, Tolerances(max_psr_drop=0.1))
    (cell,) = result.cells
    assert cell.failures == (PROTECTION_DROP,)
    assert cell.psr[0] == pytest.approx(-0.4) and cell.psr[1] < -0.4 < cell.psr[2] < 0.0

    noisy_base, noisy_cand = versions({"mid": 0.9}, {"mid": 0.7}, half_width=0.3)  # CIs overlap widely
    assert not compare_rows(noisy_base, noisy_cand, Tolerances(max_psr_drop=0.1)).failed
    assert compare_rows(noisy_base, noisy_cand, Tolerances(max_psr_drop=0.1, require_significance=False)).failed
    assert not compare_rows(base, cand, Tolerances(max_psr_drop=0.5)).failed  # within a generous tolerance


def test_distortion_rise_beyond_tolerance_fails() -> None:
    base = [row("fawkes-v1.0-early:mid", dssim=0.010)]
    cand = [row("fawkes-v1.0:mid", dssim=0.012)]
    assert compare_rows(base, cand, Tolerances(max_dssim_rise=0.001)).cells[0].failures == (DISTORTION_RISE,)
    assert not compare_rows(base, cand, Tolerances(max_dssim_rise=0.005)).failed
    assert not compare_rows(cand, base, Tolerances(max_dssim_rise=0.001)).failed  # less distortion is fine


def test_same_cloak_with_changed_parameters_is_flagged() -> None:
    result = compare_rows([row("fawkes-v1.0:mid", params='{"th": 0.01}')], [row("fawkes-v1.0:mid", params='{"th": 0.012}')],
                          Tolerances())
    assert result.by == () and result.cells[0].notes == ("same cloak name, different parameters",)


def test_unpaired_and_ambiguous_cells() -> None:
    base = [row("a:mid"), row("a:mid", victim="mobileface")]
    cand = [row("b:mid")]
    result = compare_rows(base, cand, Tolerances())
    assert len(result.cells) == 1 and [r.cell["victim"] for r in result.only_baseline] == ["mobileface"]
    assert "Only in the baseline" in comparison_markdown(result)
    with pytest.raises(ValueError, match="no cell axis named clok; the axes are: cloak"):
        compare_rows(base, cand, Tolerances(), by=("clok",))
    with pytest.raises(ValueError, match="candidate: two cells pair as the same cell"):
        compare_rows(base, [row("b:mid"), row("c:mid")], Tolerances(), by=("cloak",))


def test_difference_ci_and_paired_bootstrap() -> None:
    diff, low, high = difference_ci((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))
    assert diff == pytest.approx(0.2) and low == pytest.approx(0.2 - 0.02**0.5) and high == pytest.approx(0.2 + 0.02**0.5)
    constant = paired_bootstrap([0.1, 0.5, 0.9], [0.2, 0.6, 1.0])
    assert (constant.value, constant.low, constant.high) == pytest.approx((0.1, 0.1, 0.1))
    spread = paired_bootstrap([0.0] * 4, [0.0, 0.2, 0.4, 0.6], seed=1)
    assert spread.value == pytest.approx(0.3) and spread.low < 0.3 < spread.high and spread.n_groups == 4
    with pytest.raises(ValueError):
        paired_bootstrap([0.1], [0.1, 0.2])


def test_cli_exit_codes_on_crafted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = versions({"low": 0.3, "mid": 0.95}, {"low": 0.3, "mid": 0.40}, half_width=0.05)
    one_file = tmp_path / "both.json"
    write_rows(base + cand, one_file)
    write_rows(base, tmp_path / "base.json")
    write_rows(cand, tmp_path / "cand.json")
    verdicts = tmp_path / "verdicts.json"
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cand.json"), "--json", str(verdicts)]) == 1
    out = capsys.readouterr().out
    assert "PROTECTION DROP" in out and "Verdict: FAIL: 1 of 2" in out
    saved = json.loads(verdicts.read_text())
    assert saved["failed"] and saved["by"] == ["cloak"] and [c["failures"] for c in saved["cells"]] == [[], [PROTECTION_DROP]]
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "base.json")]) == 0
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cand.json"), "--max-psr-drop", "0.6"]) == 0
    filtered = ["compare", str(one_file), str(one_file), "--baseline-filter", "cloak=fawkes-v1.0-early",
                "--candidate-filter", "cloak=fawkes-v1.0"]
    assert main(filtered) == 1
    assert main([*filtered, "--by", "victim"]) == 2  # the cloak axis then has to match: nothing pairs
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "nowhere.json")]) == 2
    assert "nowhere.json: no such file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A real audit (bundled LFW sample, dlib-resnet, 1-NN) of the noise control at two strengths."""
    from fawkes_eval.runner import DEMO_DATA, AuditConfig, run_audit

    tmp = tmp_path_factory.mktemp("real-audit")
    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{tmp / 'store.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("FAWKES_EVAL_CACHE", str(tmp / "cache"))
    config = AuditConfig(data=str(DEMO_DATA), protected_users=("Laura_Bush",), cloaks=("noise:low", "noise:high"),
                         victims=("dlib-resnet",), trackers=("1nn",), n_boot=200, experiment="compare-test", name="noise")
    outcome = run_audit(config, tmp / "out")
    mp.undo()
    return outcome.out_dir / "results.json", uri, outcome.parent_run_id


@pytest.mark.slow
def test_gate_on_real_rows(real_audit: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    results, uri, parent = real_audit
    low = ["--baseline-filter", "cloak=noise:low"]
    high = ["--candidate-filter", "cloak=noise:high"]
    # noise:high spends a larger DSSIM budget than noise:low: as a candidate it raises distortion
    assert main(["compare", str(results), str(results), *low, *high]) == 1
    assert DISTORTION_RISE.upper() in capsys.readouterr().out
    assert main(["compare", str(results), str(results), *low, *high, "--max-dssim-rise", "1"]) == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["compare", parent, parent]) == 0  # the same campaign from MLflow, every cell paired with itself
    out = capsys.readouterr().out
    assert "Verdict: PASS: 0 of 2" in out and f"MLflow run {parent}" in out
