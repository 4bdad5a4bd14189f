"""``fawkes-eval report SOURCE``: HTML page, Markdown summary and JSON leaderboard from stored results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SOURCE_HELP = ("a results JSON file, an output folder holding results.json, an MLflow run id (a campaign's parent "
               "run, or one cell's run) or an MLflow experiment name; MLflow is read at $MLFLOW_TRACKING_URI, "
               "default sqlite ./mlflow.db")


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "report", help="build the HTML / Markdown / JSON reports from a results file or MLflow",
        description="Builds a self-contained HTML report (plots, results table, image grids, campaign config, "
        "environment and model hashes), a Markdown summary and a JSON leaderboard from stored result rows. "
        "The reports are a pure function of the rows (plus example images where available).",
    )
    p.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("--out", type=Path, default=Path("fawkes-eval-report"),
                   help="folder for report.html, report.md and leaderboard.json (default: %(default)s)")
    p.add_argument("--examples", type=Path, help="folder of example pairs <name>.clean.png + <name>.cloaked.png "
                   "(default: the source's examples/ folder or artifact, if any)")
    p.add_argument("--redact", nargs="?", const="omit", choices=("omit", "blur"),
                   help="protect the people shown: leave faces out (omit, the default of a bare --redact) or blur them")
    p.add_argument("--title", help="report title (default: derived from SOURCE)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.commands._sources import SourceError, load_source
    from reports.html import render_html
    from reports.leaderboard import leaderboard_json
    from reports.markdown import markdown_summary, results_table

    try:
        source = load_source(args.source, args.examples)
    except (SourceError, ValueError) as e:
        print(f"fawkes-eval report: error: {e}", file=sys.stderr)
        return 2
    for note in source.notes:
        print(f"note: {note}")
    title = args.title or f"fawkes-eval report: {Path(args.source).name or args.source}"
    args.out.mkdir(parents=True, exist_ok=True)
    html = render_html(title, source.rows, source.examples, {"source": source.origin}, redact=args.redact or False,
                       config=source.config)
    outputs = {  # what -> (file, text)
        "html": ("report.html", html),
        "markdown": ("report.md", markdown_summary(title, source.rows)),
        "leaderboard": ("leaderboard.json", leaderboard_json(source.rows)),
    }
    for name, text in outputs.values():
        (args.out / name).write_text(text, encoding="utf-8")
    print(results_table(source.rows))
    images = "left out (--redact)" if args.redact == "omit" else f"{len(source.examples)} example pair(s)"
    print(f"{len(source.rows)} cell(s) from {source.origin}; images: {images}")
    for what, (name, _) in outputs.items():
        print(f"{what}: {args.out / name}")
    return 0
