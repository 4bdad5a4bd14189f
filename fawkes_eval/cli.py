"""The ``fawkes-eval`` command. Each verb lives in ``fawkes_eval/commands/<verb>.py``; heavy imports happen
inside the handlers, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fawkes_eval.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fawkes-eval", description="Audit face-recognition privacy cloaks against many recognizers."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fawkes_eval.commands.{name}").add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fawkes_eval.data import DatasetError
    from fawkes_eval.registry import UnknownComponentError
    from fawkes_eval.tracking import TrackingUnavailable

    try:
        return int(args.handler(args))
    except (UnknownComponentError, DatasetError, TrackingUnavailable) as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
