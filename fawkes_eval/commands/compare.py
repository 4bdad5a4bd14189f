"""``fawkes-eval compare BASELINE CANDIDATE``: the regression gate between two campaigns or cloak versions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fawkes_eval.commands.report import SOURCE_HELP

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def _filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "compare", help="regression gate: pair the cells of two campaigns or cloak versions, exit 1 on a regression",
        description="Pairs the cells of BASELINE and CANDIDATE by every cell axis except the compared ones (by "
        "default the axes in which the two sides share no value, e.g. the cloak version), shows each PSR and DSSIM "
        "difference with its 95% CI, and exits 1 when a cell's protection drops or its distortion rises beyond "
        "the tolerances, 0 when none does, 2 on bad input or when no cells pair.",
        epilog="Example (one campaign holding both versions): fawkes-eval compare out/results.json out/results.json "
        "--baseline-filter cloak=fawkes-v1.0-early --candidate-filter cloak=fawkes-v1.0",
    )
    p.add_argument("baseline", metavar="BASELINE", help=SOURCE_HELP)
    p.add_argument("candidate", metavar="CANDIDATE", help="same kinds as BASELINE")
    p.add_argument("--max-psr-drop", type=float, default=0.05,
                   help="largest allowed fall of a cell's PSR, absolute (default: %(default)s)")
    p.add_argument("--max-dssim-rise", type=float, default=0.001,
                   help="largest allowed rise of a cell's mean DSSIM on the aligned crop (default: %(default)s)")
    p.add_argument("--ignore-ci", action="store_true",
                   help="fail on a PSR drop beyond tolerance even when its 95%% CI includes zero")
    p.add_argument("--by", type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()),
                   help="comma-separated cell axes being compared (default: those the two sides share no value in)")
    p.add_argument("--baseline-filter", type=_filter, action="append", default=[], metavar="KEY=VALUE",
                   help="keep only baseline cells whose KEY is VALUE (or VALUE:<mode>); repeatable")
    p.add_argument("--candidate-filter", type=_filter, action="append", default=[], metavar="KEY=VALUE",
                   help="keep only candidate cells whose KEY is VALUE (or VALUE:<mode>); repeatable")
    p.add_argument("--json", type=Path, help="also write the verdicts as JSON to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap (default: %(default)s)")
    p.set_defaults(handler=run)


def _selected(rows: list[Any], filters: list[tuple[str, str]]) -> list[Any]:
    def keep(row: Any) -> bool:
        return all(v in (str(row.cell.get(k, "")), str(row.cell.get(k, "")).partition(":")[0]) for k, v in filters)

    return [r for r in rows if keep(r)]


def run(args: argparse.Namespace) -> int:
    import json

    from fawkes_eval.commands._sources import SourceError, load_source
    from reports.compare import Tolerances, compare_rows, comparison_dict, comparison_markdown

    try:
        tolerances = Tolerances(args.max_psr_drop, args.max_dssim_rise, require_significance=not args.ignore_ci)
        sides = []
        for name, text, filters in (("baseline", args.baseline, args.baseline_filter),
                                    ("candidate", args.candidate, args.candidate_filter)):
            source = load_source(text)
            rows = _selected(source.rows, filters)
            if not rows:
                raise SourceError(f"{name} {source.origin}: no cells match {dict(filters)}")
            print(f"{name}: {len(rows)} cell(s) from {source.origin}")
            sides.append(rows)
        comparison = compare_rows(sides[0], sides[1], tolerances, by=args.by, seed=args.seed)
    except (SourceError, ValueError) as e:
        print(f"fawkes-eval compare: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(comparison_markdown(comparison))
    if args.json:
        args.json.write_text(json.dumps(comparison_dict(comparison), indent=1, allow_nan=False))
    if not comparison.cells:
        print("fawkes-eval compare: error: no cells pair; check --by and the filters", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FAIL if comparison.failed else EXIT_PASS
