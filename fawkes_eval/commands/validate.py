"""``fawkes-eval validate FILE``: check a campaign file and list its cells and their cost, computing nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "validate", help="check a campaign file: schema, paths, component names; list the cells and their cost",
        description="Reads a campaign YAML file, checks every field (errors name the file, line and field), that "
        "its paths stay inside the declared roots, and that every cloak, model, tracker and countermeasure is "
        "registered; then lists the grid's cells with an estimate of their cost. Nothing is computed or written.",
    )
    p.add_argument("file", type=Path, help="campaign YAML file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.campaign import CampaignError, load_campaign
    from fawkes_eval.plan import describe_plan
    from fawkes_eval.runner import prepare_campaign

    try:
        plan = prepare_campaign(load_campaign(args.file))
    except (CampaignError, ValueError) as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2
    describe_plan(plan, None)
    print(f"{args.file}: valid")
    return 0
