"""``fawkes-eval report SOURCE [SOURCE ...]``: HTML page, Markdown summary and JSON leaderboard from stored results;
given several sources (campaigns), also one comparison page over them (``reports/comparison.py``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

SOURCE_HELP = ("a results JSON file, an output folder holding results.json, an MLflow run id (a campaign's parent "
               "run, or one cell's run) or an MLflow experiment name; MLflow is read at $MLFLOW_TRACKING_URI, "
               "default sqlite ./mlflow.db")


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "report", help="build the HTML / Markdown / JSON reports from a results file or MLflow",
        description="Builds a self-contained HTML report (verdict, plots, results table, image grids, campaign "
        "config, environment and model hashes), a Markdown summary and a JSON leaderboard from stored result rows. "
        "Given several sources (campaigns), writes each one's reports in a folder of its own under --out and one "
        "comparison page, comparison.html: cloaks as rows, threat models as columns, each cell linked to its "
        "campaign's report. The reports are a pure function of the rows (plus example images where available).",
    )
    p.add_argument("sources", metavar="SOURCE", nargs="+", help=SOURCE_HELP)
    p.add_argument("--out", type=Path, default=Path("fawkes-eval-report"),
                   help="folder for report.html, report.md and leaderboard.json, and with several sources for "
                   "comparison.html and one folder per source (default: %(default)s)")
    p.add_argument("--examples", type=Path, help="folder of example pairs <name>.clean.png + <name>.cloaked.png "
                   "(default: the source's examples/ folder or artifact, if any)")
    p.add_argument("--redact", nargs="?", const="omit", choices=("omit", "blur"),
                   help="protect the people shown: leave faces out (omit, the default of a bare --redact) or blur them")
    p.add_argument("--title", help="report title (default: derived from SOURCE)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.commands._sources import SourceError, load_source

    try:
        sources = [load_source(text, args.examples) for text in args.sources]
    except (SourceError, ValueError) as e:
        print(f"fawkes-eval report: error: {e}", file=sys.stderr)
        return 2
    if len(sources) == 1:
        title = args.title or f"fawkes-eval report: {Path(args.sources[0]).name or args.sources[0]}"
        _write_reports(sources[0], title, args.out, args.redact, echo_table=True)
        return 0
    return _write_comparison(args, sources)


def campaign_name(source: Any, text: str) -> str:
    """A source's campaign name: from its configuration, else from what was given on the command line."""
    config = source.config or {}
    name = config.get("name") if isinstance(config, dict) else None
    return str(name) if name else (Path(text).name or text)


def _folder_name(name: str, taken: set[str]) -> str:
    """A safe, unique folder name for a campaign's own reports under the comparison's folder."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "campaign"
    folder, i = base, 2
    while folder in taken:
        folder, i = f"{base}-{i}", i + 1
    taken.add(folder)
    return folder


def _write_comparison(args: argparse.Namespace, sources: list[Any]) -> int:
    from reports.comparison import CampaignResults, comparison_html

    taken: set[str] = set()
    campaigns = []
    for text, source in zip(args.sources, sources, strict=True):
        name = campaign_name(source, text)
        folder = _folder_name(name, taken)
        _write_reports(source, f"fawkes-eval report: {name}", args.out / folder, args.redact, echo_table=False)
        campaigns.append(CampaignResults(name, source.rows, f"{folder}/report.html", source.origin))
    title = args.title or "fawkes-eval comparison: " + ", ".join(c.name for c in campaigns)
    page = args.out / "comparison.html"
    page.write_text(comparison_html(title, campaigns), encoding="utf-8")
    print(f"comparison of {len(campaigns)} campaign(s), {sum(len(c.rows) for c in campaigns)} cell(s): {page}")
    return 0


def _write_reports(source: Any, title: str, out: Path, redact: Any, echo_table: bool) -> None:
    from reports.html import render_html
    from reports.leaderboard import leaderboard_json
    from reports.markdown import markdown_summary, results_table

    for note in source.notes:
        print(f"note: {note}")
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(title, source.rows, source.examples, {"source": source.origin}, redact=redact or False,
                       config=source.config)
    outputs = {  # what -> (file, text)
        "html": ("report.html", html),
        "markdown": ("report.md", markdown_summary(title, source.rows)),
        "leaderboard": ("leaderboard.json", leaderboard_json(source.rows)),
    }
    for name, text in outputs.values():
        (out / name).write_text(text, encoding="utf-8")
    if echo_table:
        print(results_table(source.rows))
    images = "left out (--redact)" if redact == "omit" else f"{len(source.examples)} example pair(s)"
    print(f"{len(source.rows)} cell(s) from {source.origin}; images: {images}")
    for what, (name, _) in outputs.items():
        print(f"{what}: {out / name}")
