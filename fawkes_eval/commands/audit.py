"""``fawkes-eval audit``: the protection protocol on the user's own identity-folder dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fawkes_eval.commands._audit_options import add_audit_options, run_with_overrides


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser("audit", help="run the protection protocol on your own identity-folder dataset")
    p.add_argument("--data", type=Path, required=True, help="dataset root: DATA/<identity>/<image>")
    p.add_argument("--subset", type=Path, help="file listing image paths relative to --data, one per line")
    p.add_argument("--name", default="audit", help="name of this audit (report folder, MLflow parent run)")
    add_audit_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    base = {"data": str(args.data), "subset": str(args.subset) if args.subset else None, "name": args.name}
    return run_with_overrides(args, base)
