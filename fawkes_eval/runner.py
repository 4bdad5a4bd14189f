"""The campaign driver: a campaign's cells -> result rows on disk, MLflow runs and reports.

It sits on top of the rooms and reaches them only through the registries, in four parts: ``plan`` (cells, keys,
costs), ``workspace`` (the per-process workspace and the execution of one claimed cell), ``outputs`` (the
results folder and artifacts) and this driver, which checks every photo once, hands the unfinished cells to an
executor, attaches the clean baseline and writes the reports. A killed campaign resumes where it stopped and
never logs a cell twice; two processes running one campaign never compute the same cell twice.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from fawkes_eval import console
from fawkes_eval.align import TEMPLATES, default_cache_dir
from fawkes_eval.baselines import attach_baselines
from fawkes_eval.campaign import Campaign, DatasetSpec, GridSpec, ProtectedSpec, ProtocolSpec, check_components, entries
from fawkes_eval.executors import Executor, LocalExecutor
from fawkes_eval.outputs import read_left_out, write_campaign_files, write_left_out, write_results
from fawkes_eval.plan import CampaignPlan, CellTask, plan_campaign
from fawkes_eval.results import ResultRow
from fawkes_eval.rooms import load_rooms
from fawkes_eval.tracking import RunLogger, git_revision
from fawkes_eval.workspace import (
    CellClaimed,
    CellDoneElsewhere,
    RunContext,
    Workspace,
    cell_tags,
    claim,
    drop_workspaces,
    execute_cell,
    prepare_group,
    read_cell,
    register_user_models,
    reset_logging_patience,
    workspace,
)

DEMO_DATA = Path(__file__).parent / "demo_data" / "lfw_sample"
PARENT_LOCK = "parent"  # claimed as cells/parent.lock: one process at a time opens the parent run or backfills it


@dataclass(frozen=True)
class AuditConfig:
    """The flat options of ``fawkes-eval audit`` / ``demo``: one dataset and one surrogate set."""

    data: str
    subset: str | None = None
    protected_users: tuple[str, ...] = ()  # empty: choose n_protected at random with the seed
    n_protected: int = 2
    cloaks: tuple[str, ...] = ("none", "fawkes-v1.0:low", "fawkes-v1.0:mid", "fawkes-v1.0:high", "noise:high")
    surrogates: tuple[str, ...] = ("dlib-resnet-torch",)
    victims: tuple[str, ...] = ("dlib-resnet", "mobileface", "hse-faceres")
    trackers: tuple[str, ...] = ("1nn", "logreg")
    seeds: tuple[int, ...] = (0,)
    train_fraction: float = 0.7
    leak_ratio: float = 0.0
    n_boot: int = 2000
    experiment: str = "fawkes-eval"
    name: str = "audit"
    detector: str | None = None  # DETECTORS name; None: dlib HOG
    aligned: str | None = None  # the photos are crops on this template: nothing is detected

    def __post_init__(self) -> None:
        for field_name in ("cloaks", "surrogates", "victims", "trackers", "seeds"):
            if not getattr(self, field_name):
                raise ValueError(f"{field_name} must not be empty")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")

    def to_campaign(self) -> Campaign:
        root = Path(self.data).resolve()
        return Campaign(
            study=self.experiment,
            name=self.name,
            datasets=(DatasetSpec(_safe_name(Path(self.subset).stem if self.subset else root.name), root,
                                  Path(self.subset).resolve() if self.subset else None, self.detector, self.aligned),),
            grid=GridSpec(entries(*self.cloaks), (self.surrogates,), entries(*self.victims), entries(*self.trackers),
                          leak_ratios=(self.leak_ratio,), seeds=self.seeds),
            protected=ProtectedSpec(self.protected_users, len(self.protected_users) or self.n_protected),
            protocol=ProtocolSpec(train_fraction=self.train_fraction, n_boot=self.n_boot),
        )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "dataset"


@dataclass
class CampaignOutcome:
    rows: list[ResultRow]
    out_dir: Path
    parent_run_id: str
    tracking_uri: str
    ran: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)  # errors.json: one row per file left out
    seconds: float = 0.0
    elsewhere: int = 0  # cells another process computed while this one ran

    @property
    def exit_status(self) -> int:
        """0: every cell ran and every file was usable or merely had no face; 1: a cell failed, or a file
        was refused or unreadable."""
        return 1 if self.failed or any(e["kind"] != "no-face" for e in self.left_out) else 0


def results_dir_of(campaign: Campaign, out_root: Path | None = None) -> Path:
    return ((out_root or campaign.outputs.dir) / campaign.name).resolve()


def prepare_campaign(campaign: Campaign) -> CampaignPlan:
    """Resolve and check every component of every cell and plan the cells; nothing is computed or written."""
    load_rooms()
    register_user_models(campaign)
    check_components(campaign)
    return plan_campaign(campaign)


def quiet_libraries() -> None:
    """MLflow's store prints INFO lines about creating its tables on every first run; a person reading the
    campaign's progress does not need them (warnings still show)."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_campaign(
    campaign: Campaign,
    out_root: Path | None = None,
    executor: Executor | None = None,
    stream: TextIO | None = None,
) -> CampaignOutcome:
    """Run every unfinished cell of ``campaign`` with ``executor`` (default: in this process) and report.

    Finished cells (``cells/<key>.json``) are not computed again; cells missing from the parent MLflow run are
    logged. ``out_root`` replaces ``outputs.dir``.
    """
    start = time.perf_counter()
    stream = stream or sys.stdout
    quiet_libraries()
    plan = prepare_campaign(campaign)
    results_dir = results_dir_of(campaign, out_root)
    write_campaign_files(campaign, plan, results_dir)

    finished = {t.key: row for t in plan.tasks if (row := read_cell(results_dir, t.key)) is not None}
    todo = [t for t in plan.tasks if t.key not in finished]
    logger = RunLogger(campaign.study)
    with claim(results_dir, PARENT_LOCK, wait=True):  # a second process finds the parent the first one opened
        parent = logger.open_parent(
            campaign.name, campaign.fingerprint(),
            tags={"fe.git": git_revision(), "fe.study": campaign.study, "fe.campaign": campaign.name,
                  "fe.source": str(campaign.source or "")},
            params={"datasets": ",".join(plan.datasets), "n_cells": len(plan.tasks),
                    "seeds": ",".join(map(str, campaign.grid.seeds))},
        )
    console.say(stream, f"campaign {campaign.name}: {len(plan.tasks)} cells, {len(finished)} already done, "
                        f"{len(todo)} to run")

    failed: list[str] = []
    busy: list[CellTask] = []
    rows_by_key = dict(finished)
    left_out = read_left_out(results_dir)
    computed = 0
    if todo:
        import torch

        context = RunContext(campaign, (), default_cache_dir().resolve(), results_dir, logger.uri, parent,
                             torch.get_num_threads())
        # the templates of every model decide which photos are usable, so they are fixed before any cell runs
        driver = workspace(context, stream)
        context = replace(context, templates=_templates(campaign, driver))
        driver.context = context
        # every photo is checked (and aligned into the on-disk cache) here, once, whatever the executor
        left_out = [e.to_dict(name) for name in plan.datasets for e in driver.prepared(name).skipped]
        write_left_out(results_dir, left_out)
        if executor is not None and not isinstance(executor, LocalExecutor):
            drop_workspaces()  # the workers load their own models
        bar = console.progress(None, "cells", total=len(todo), unit="cell")

        def on_done(task: CellTask, result: ResultRow | BaseException) -> None:
            nonlocal computed
            bar.update(1)
            if isinstance(result, CellClaimed):
                busy.append(task)  # another process computes it; read once it lets go
                return
            if isinstance(result, CellDoneElsewhere):
                rows_by_key[task.key] = result.row
                return
            if isinstance(result, BaseException):
                failed.append(f"{task.label}: {_describe(result)}")
                console.say(stream, f"FAILED {task.label}: {_describe(result)}")
                return
            computed += 1
            rows_by_key[task.key] = result
            console.say(stream, f"[{len(rows_by_key)}/{len(plan.tasks)}] {task.label}: {_headline(result)}")

        (executor or LocalExecutor()).run(todo, prepare_group, execute_cell, context, on_done)
        bar.close()
        for task in busy:  # wait for the other process; if it died, its claim is gone and the cell is computed here
            with claim(results_dir, task.key, wait=True):
                pass
            try:
                rows_by_key[task.key] = execute_cell(task, context)
                computed += 1
            except CellDoneElsewhere as done:
                rows_by_key[task.key] = done.row
            except Exception as error:
                failed.append(f"{task.label}: {_describe(error)}")

    rows = attach_baselines([rows_by_key[t.key] for t in plan.tasks if t.key in rows_by_key])
    # finished cells missing from the parent run: computed before a kill, by an earlier version of this campaign
    # file, or saved while the server was down (in any worker); logged now, or a clean failure and a rerun logs them
    reset_logging_patience()
    with claim(results_dir, PARENT_LOCK, wait=True):
        logged = logger.logged_cells(parent)
        for row in rows:
            if row.key not in logged:
                logger.log_cell(parent, row, cell_tags(row))
    write_results(campaign, plan, rows, left_out, results_dir, logger, parent, stream)
    logger.finish(parent, "FINISHED" if not failed else "FAILED")
    elapsed = time.perf_counter() - start
    outcome = CampaignOutcome(rows, results_dir, parent, logger.uri, computed, len(finished), failed, left_out, elapsed,
                              elsewhere=len(todo) - computed - len(failed))
    console.say(stream, f"report: {results_dir / 'report.html'}\nmarkdown: {results_dir / 'report.md'}\n"
                        f"results: {results_dir / 'results.json'}")
    console.say(stream, f"MLflow: {logger.uri} (experiment {campaign.study!r}, parent run {parent}); "
                        f"view with: mlflow ui --backend-store-uri {logger.uri}")
    if left_out:
        console.say(stream, f"files left out ({results_dir / 'errors.json'}):")
        for e in left_out:
            console.say(stream, f"  [{e['kind']}] {e['file']}: {e['reason']}")
    for line in failed:
        console.say(stream, f"failed: {line}")
    console.say(stream, summary_line(campaign, outcome))
    return outcome


def _headline(row: ResultRow) -> str:
    m = row.metrics
    h = row.headline
    # the scenario's own name for its headline (its column header without the interval's label)
    name = next((header for metric, header, _ in row.columns if metric == h), h.upper()).removesuffix(" [95% CI]")
    text = f"{name} {m.get(h, float('nan')):.2f} [{m.get(f'{h}_ci_low', float('nan')):.2f}, " \
           f"{m.get(f'{h}_ci_high', float('nan')):.2f}]"
    return text + (f", others' acc {m['others_acc']:.2f}" if "others_acc" in m else "")


def summary_line(campaign: Campaign, outcome: CampaignOutcome) -> str:
    total = len(outcome.rows) + len(outcome.failed)
    no_face = sum(e["kind"] == "no-face" for e in outcome.left_out)
    elsewhere = f", {outcome.elsewhere} computed by another process" if outcome.elsewhere else ""
    return (f"{campaign.name}: {total} cells: {outcome.ran} run, {outcome.reused} skipped (already done){elsewhere}, "
            f"{len(outcome.failed)} failed; {len(outcome.left_out)} file(s) left out ({no_face} without a "
            f"detectable face); elapsed: {outcome.seconds:.0f} s")


def _describe(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return lines[-1].strip() if lines else repr(error)


def _templates(campaign: Campaign, ws: Workspace) -> tuple[str, ...]:
    names = {s for group in campaign.grid.surrogates for s in group} | {v.name for v in campaign.grid.victims}
    templates = {ws.model(n).info.template for n in sorted(names)}
    unknown = templates - set(TEMPLATES)
    if unknown:
        raise ValueError(f"models ask for unknown alignment templates: {sorted(unknown)}")
    return tuple(sorted(templates))


def run_audit(config: AuditConfig, out_root: Path | None, stream: TextIO | None = None) -> CampaignOutcome:
    """The flat ``audit`` / ``demo`` options as a one-dataset campaign."""
    return run_campaign(config.to_campaign(), out_root, stream=stream)
