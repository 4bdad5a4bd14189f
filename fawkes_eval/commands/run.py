"""``fawkes-eval run FILE``: run a campaign's unfinished cells (or, with --dry-run, list them and their cost)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "run", help="run a campaign file; finished cells are skipped, so a killed run resumes",
        description="Runs every cell of a campaign (YAML, see campaigns/ for examples) that has not finished yet. "
        "Each finished cell is written to OUT/<campaign>/cells/<key>.json before the next starts and logged as a "
        "child of the campaign's MLflow parent run (local ./mlflow.db unless MLFLOW_TRACKING_URI is set), so "
        "rerunning the same command after a crash or kill continues where it stopped and never logs a cell twice. "
        "An unreachable MLflow server stops the run before anything is computed; one that goes away mid-run is "
        "waited for, with retries, up to FAWKES_EVAL_TRACKING_PATIENCE_S seconds (default 300). "
        "Aligned faces, cloaks and embeddings are cached by content in ./.fawkes-eval-cache (FAWKES_EVAL_CACHE).",
    )
    p.add_argument("file", type=Path, help="campaign YAML file")
    p.add_argument("--dry-run", action="store_true", help="list the cells (done / todo) and the cost; run nothing")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: cells in this process (default); ray: cells as Ray tasks (pip install ray)")
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local instance)")
    p.add_argument("--out", type=Path, help="results folder, replacing the campaign's outputs.dir")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.campaign import CampaignError, load_campaign
    from fawkes_eval.executors import make_executor
    from fawkes_eval.plan import describe_plan
    from fawkes_eval.runner import prepare_campaign, results_dir_of, run_campaign

    try:
        executor = make_executor(args.executor, args.address)
        campaign = load_campaign(args.file)
        if args.dry_run:
            describe_plan(prepare_campaign(campaign), results_dir_of(campaign, args.out))
            return 0
        outcome = run_campaign(campaign, args.out, executor)
    except (CampaignError, ValueError) as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2
    return outcome.exit_status
