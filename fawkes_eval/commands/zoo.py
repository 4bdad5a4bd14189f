"""``fawkes-eval zoo list|check``: the model zoo and its clean identification accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fawkes_eval.commands._audit_options import add_face_options, csv


def add_parser(verbs: Any) -> None:
    zoo = verbs.add_parser("zoo", help="the model zoo: list it, or check its accuracy on a dataset")
    zoo_verbs = zoo.add_subparsers(dest="zoo_verb", required=True)
    zoo_verbs.add_parser("list", help="list the registered extractors with their metadata").set_defaults(handler=run_list)
    check = zoo_verbs.add_parser("check", help="embed a dataset and print 1-NN / logistic k-fold accuracy per model")
    check.add_argument("--data", type=Path, required=True, help="dataset root: DATA/<identity>/<image>")
    check.add_argument("--subset", type=Path, help="file listing image paths relative to --data")
    check.add_argument("--models", type=csv, help="comma-separated extractor names (default: all)")
    check.add_argument("--folds", type=int, default=5, help="stratified folds (default: %(default)s)")
    check.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: %(default)s)")
    add_face_options(check)
    check.set_defaults(handler=run_check)


def run_list(args: argparse.Namespace) -> int:
    from fawkes_eval import zoo

    zoo.print_zoo()
    return 0


def run_check(args: argparse.Namespace) -> int:
    import sys

    from fawkes_eval import zoo
    from fawkes_eval.align import TEMPLATES

    if args.aligned is not None and args.aligned not in TEMPLATES:
        print(f"fawkes-eval zoo check: error: --aligned {args.aligned!r}: unknown template; known: "
              f"{', '.join(TEMPLATES)}", file=sys.stderr)
        return 2
    return zoo.check(args.data, args.subset, args.models, args.folds, args.seed, args.detector, args.aligned)
