"""A campaign's results folder and its MLflow artifacts.

Results folder of a campaign (``outputs.dir/<campaign name>/``)::

    config.json            the resolved campaign (campaign.yaml: the file it was read from)
    manifests/<dataset>.json  sha256 of every image used
    cells/<key>.json       one ResultRow per finished cell, as computed (cells/<key>.lock: its claim)
    errors.json            one row per file left out: dataset, file, reason, kind (refused, unreadable, no-face)
    examples/<group>.json  clean / cloaked face crops (PNG beside it) per cloaking run, for image grids
    results.json           the campaign's rows in grid order, with the clean baseline attached
    report.md, report.html one file per report format of ``outputs.reports`` (the ``REPORTS`` formats)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TextIO

from fawkes_eval import console
from fawkes_eval.cache import atomic_write_text
from fawkes_eval.campaign import Campaign
from fawkes_eval.plan import CampaignPlan
from fawkes_eval.registry import REPORTS
from fawkes_eval.results import ImageExample, ReportBundle, ResultRow, validate_row
from fawkes_eval.tracking import RunLogger

LEFT_OUT = "errors.json"


def write_campaign_files(campaign: Campaign, plan: CampaignPlan, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / "config.json", json.dumps(campaign.to_dict(), indent=1))
    if campaign.source is not None:
        shutil.copyfile(campaign.source, results_dir / "campaign.yaml")
    for name, dataset in plan.datasets.items():
        (results_dir / "manifests").mkdir(exist_ok=True)
        dataset.write_manifest(results_dir / "manifests" / f"{name}.json")


def read_left_out(results_dir: Path) -> list[dict[str, str]]:
    """The left-out files of an earlier run of this campaign (a rerun with nothing to do reports them too)."""
    path = results_dir / LEFT_OUT
    return list(json.loads(path.read_text())) if path.exists() else []


def write_left_out(results_dir: Path, left_out: list[dict[str, str]]) -> None:
    atomic_write_text(results_dir / LEFT_OUT, json.dumps(left_out, indent=1))


def _examples(results_dir: Path, plan: CampaignPlan) -> list[ImageExample]:
    """Write the ``examples.json`` index of this campaign's cloaking runs (grid order) and read the pairs."""
    from reports.examples import INDEX, read_examples

    folder = results_dir / "examples"
    metas = [folder / f"{group}.json" for group in dict.fromkeys(t.group for t in plan.tasks)]
    index = [json.loads(m.read_text()) for m in metas if m.exists()]
    if not index:
        return []
    atomic_write_text(folder / INDEX, json.dumps(index, indent=1))
    return read_examples(folder)


def _example_files(folder: Path) -> list[str]:
    """The index and the PNGs it names."""
    index = folder / "examples.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text())
    return ["examples.json", *(e[kind] for e in entries for kind in ("clean", "cloaked"))]


def write_results(campaign: Campaign, plan: CampaignPlan, rows: list[ResultRow], left_out: list[dict[str, str]],
                  results_dir: Path, logger: RunLogger, parent: str, stream: TextIO) -> None:
    """results.json, errors.json and one file per report format; all of them artifacts of the parent run."""
    for row in rows:
        validate_row(row.to_dict())
    atomic_write_text(results_dir / "results.json", json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    write_left_out(results_dir, left_out)
    artifacts = ["results.json", "config.json", LEFT_OUT, *(["campaign.yaml"] if campaign.source else [])]
    examples = _examples(results_dir, plan)
    if rows:
        context = {"datasets": "; ".join(f"{n} ({len(d.records)} images, {len(d.identities)} identities, manifest "
                                         f"sha256 {d.manifest_hash()})" for n, d in plan.datasets.items()),
                   "surrogate sets": "; ".join(",".join(s) for s in campaign.grid.surrogates)}
        bundle = ReportBundle(f"fawkes-eval: {campaign.name}", rows, examples, left_out, campaign.to_dict(), context)
        for name in campaign.outputs.reports:
            file = str(REPORTS.declared(name)["file"])
            atomic_write_text(results_dir / file, REPORTS.factory(name)(bundle))
            artifacts.append(file)
        console.say(stream, "\n" + REPORTS.factory("table")(rows))
        console.say(stream, f"Measured on:\n{REPORTS.factory('provenance')(rows)}")
    for name in artifacts:
        logger.log_artifact(parent, results_dir / name)
    for manifest in sorted((results_dir / "manifests").glob("*.json")):
        logger.log_artifact(parent, manifest, "manifests")
    for example in _example_files(results_dir / "examples"):
        logger.log_artifact(parent, results_dir / "examples" / example, "examples")
