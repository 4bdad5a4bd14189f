"""The full-audit campaign (campaigns/full-audit.yaml) end to end on the bundled sample: every threat model runs,
each cell is one MLflow child tagged with its scenario, and the report opens with its verdict.

The file runs as shipped except for its dataset: the gate campaign's copy of the sample (same photos, Laura_Bush
renamed), whose caches are copied in, so the white-box Fawkes uploads the gate run cloaked are not cloaked again.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import EVIL, REPO, CampaignRun, run_campaign_file

from fawkes_eval.campaign import load_campaign
from fawkes_eval.rooms import load_rooms

pytestmark = pytest.mark.heavy

FULL_AUDIT = REPO / "campaigns" / "full-audit.yaml"


@pytest.fixture(scope="module")
def full_audit(tmp_path_factory: pytest.TempPathFactory, gate_run: CampaignRun) -> CampaignRun:
    folder = tmp_path_factory.mktemp("full-audit")
    shutil.copytree(gate_run.folder / "cache", folder / "cache")
    shutil.copy(FULL_AUDIT.parent / "public-sample.txt", folder / "public-sample.txt")
    text = FULL_AUDIT.read_text()
    shipped = '- {name: lfw-sample, root: "bundled:lfw_sample"}'
    assert text.count(shipped) == 1 and "users: [Laura_Bush, Tony_Blair]" in text
    text = text.replace(shipped, '- {name: lfw-sample, root: "data:sample"}').replace(
        "users: [Laura_Bush, Tony_Blair]", f'users: ["{EVIL}", Tony_Blair]')
    return run_campaign_file(folder, text, "full-audit.yaml")


@pytest.mark.slow
def test_every_threat_model_runs_with_one_mlflow_child_per_cell(full_audit: CampaignRun) -> None:
    from mlflow.tracking import MlflowClient

    load_rooms()
    cells = load_campaign(full_audit.folder / "full-audit.yaml").cells()
    assert len(full_audit.rows) == len(cells)
    scenarios = Counter(str(r.cell["scenario"]) for r in full_audit.rows)
    assert set(scenarios) == {"protection", "verification", "search", "linkability"}
    client = MlflowClient(full_audit.uri)
    children = client.search_runs([client.get_run(full_audit.parent).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{full_audit.parent}'")
    assert Counter(c.data.tags["fe.scenario"] for c in children) == scenarios
    for child in children:
        headline = next(r.headline for r in full_audit.rows if r.cell["scenario"] == child.data.tags["fe.scenario"])
        assert headline in child.data.metrics


@pytest.mark.slow
def test_robust_adaptive_and_upload_preset_cells_carry_what_they_did(full_audit: CampaignRun) -> None:
    rows = full_audit.rows
    robust = [r for r in rows if r.cell.get("tracker_options")]
    assert robust and all(r.provenance["robust_training"]["transforms"] == ["jpeg:50"] for r in robust)
    adapted = [r for r in rows if r.cell.get("victim_options", {}).get("adapt") == "facecure"]
    assert adapted and all("control_" + r.headline in r.metrics for r in adapted)
    assert all(r.provenance["adaptation"]["identities"] for r in adapted)
    preset = [r for r in rows if r.cell["countermeasure"] == "instagram-like"]
    assert len(preset) == len(rows) // 2
    # search, linkability and verification train no tracker: one cell per victim, not one per tracker
    assert {r.cell["tracker"] for r in rows if r.cell["scenario"] != "protection"} == {"none"}


@pytest.mark.slow
def test_the_report_opens_with_one_verdict_per_cloak(full_audit: CampaignRun) -> None:
    html = (full_audit.results / "report.html").read_text()
    verdict = html.index('id="verdict"')
    assert verdict < html.index('class="scenario"')
    section = html[verdict: html.index('class="scenario"')]
    for cloak in ("fawkes-v1.0:high", "noise:high"):
        assert cloak in section
    markdown = Path(full_audit.results / "report.md").read_text()
    assert markdown.index("## Verdict") < markdown.index("fawkes-v1.0:high") < markdown.index("## Scenario")
