"""``fawkes-eval sweep``: one cloak against a countermeasure family, PSR vs strength with confidence intervals.

The sweep is a campaign (the countermeasure axis holds ``none`` plus every registered strength of the chosen
families), run by the campaign runner: cells are cached, resumable and logged to MLflow like any other.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from fawkes_eval.commands._audit_options import add_face_options, csv


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "sweep", help="one cloak vs a countermeasure family (jpeg, blur, ...): print PSR vs strength",
        description="Runs the protection protocol for one cloak with no countermeasure and with every registered "
        "strength of the given countermeasure families (jpeg, blur, rescale, median, gaussian-noise, bit-depth), "
        "applied to the tracker's uploads, queries or both, and prints PSR [95% CI] and the others' accuracy per "
        "strength. A campaign underneath: results land in OUT/<name>/ and MLflow, and a rerun skips finished cells.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset root: DATA/<identity>/<image>")
    p.add_argument("--subset", type=Path, help="file listing image paths relative to --data, one per line")
    p.add_argument("--cloak", required=True, help="the cloak under test, e.g. fawkes-v1.0:mid")
    p.add_argument("--surrogates", type=csv, default=("dlib-resnet-torch",),
                   help="extractors the cloak optimises against (default: %(default)s)")
    p.add_argument("--families", type=csv, required=True, help="countermeasure families, e.g. jpeg,blur")
    p.add_argument("--side", choices=("uploads", "queries", "both"), default="uploads",
                   help="which photos the countermeasure transforms (default: %(default)s)")
    p.add_argument("--victims", type=csv, default=("dlib-resnet",), help="victim extractors (default: %(default)s)")
    p.add_argument("--trackers", type=csv, default=("1nn",), help="trackers (default: %(default)s)")
    p.add_argument("--protected", type=csv, default=(), help="identities to protect (default: drawn with the seed)")
    p.add_argument("--n-protected", type=int, default=3, help="how many to draw without --protected (default: 3)")
    p.add_argument("--seeds", type=lambda s: tuple(int(x) for x in csv(s)), default=(0,), help="seeds (default: 0)")
    p.add_argument("--name", help="campaign name (default: sweep-<cloak>-<families>-<side>)")
    p.add_argument("--experiment", default="fawkes-eval-sweep", help="MLflow experiment (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("fawkes-eval-out"), help="results folder (default: %(default)s)")
    add_face_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.campaign import CampaignError

    try:
        campaign = sweep_campaign(args)
        from fawkes_eval.runner import run_campaign

        outcome = run_campaign(campaign, args.out, stream=sys.stderr)
    except (CampaignError, ValueError) as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2
    print(sweep_table(outcome.rows))
    return outcome.exit_status


def family_strengths(family: str) -> list[str]:
    """Every registered strength of a countermeasure family, weakest first (registration order)."""
    from fawkes_eval.registry import COUNTERMEASURES
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    COUNTERMEASURES.mode_params(family)  # an unknown family fails here, naming the registered ones
    return [name for name in COUNTERMEASURES.names() if name.partition(":")[0] == family]


def sweep_campaign(args: argparse.Namespace) -> Any:
    from fawkes_eval.campaign import NO_COUNTERMEASURE, Campaign, DatasetSpec, GridSpec, ProtectedSpec, ProtocolSpec, entries

    countermeasures = (NO_COUNTERMEASURE, *(s for family in args.families for s in family_strengths(family)))
    root = args.data.resolve()
    dataset = re.sub(r"[^A-Za-z0-9._-]", "_", args.subset.stem if args.subset else root.name)
    name = args.name or re.sub(r"[^A-Za-z0-9._-]", "_", f"sweep-{args.cloak}-{'+'.join(args.families)}-{args.side}")
    return Campaign(
        study=args.experiment, name=name,
        datasets=(DatasetSpec(dataset, root, args.subset.resolve() if args.subset else None, args.detector,
                              args.aligned),),
        grid=GridSpec(entries(args.cloak), (tuple(args.surrogates),), entries(*args.victims), entries(*args.trackers),
                      countermeasures=entries(*countermeasures), seeds=tuple(args.seeds)),
        protected=ProtectedSpec(tuple(args.protected), len(args.protected) or args.n_protected),
        protocol=ProtocolSpec(countermeasure_side=args.side),
    )


def sweep_table(rows: list[Any]) -> str:
    """Markdown: one line per (victim, tracker, seed, countermeasure), with what it was measured on."""
    lines = ["| cloak | victim | tracker | seed | countermeasure | side | PSR [95% CI] | others' acc | top-5 PSR |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c, m = row.cell, row.metrics
        lines.append(f"| {c['cloak']} | {c['victim']} | {c['tracker']} | {c['seed']} | {c['countermeasure']} | "
                     f"{c.get('countermeasure_side') or '-'} | {m['psr']:.2f} [{m['psr_ci_low']:.2f}, "
                     f"{m['psr_ci_high']:.2f}] | {m['others_acc']:.2f} | {m['top5']:.2f} |")
    if rows:
        p = rows[0].provenance
        lines.append(f"\nMeasured on {p.get('dataset')} (manifest sha256 {str(p.get('manifest_sha256'))[:12]}): "
                     f"{p.get('n_identities')} identities, {p.get('n_images')} images; protected "
                     f"{', '.join(p.get('protected_users', []))} ({p.get('n_queries')} clean test queries); "
                     f"surrogates {rows[0].cell['surrogates']}; bootstrap over users and images, "
                     f"n_boot {rows[0].cell.get('n_boot')}.")
    return "\n".join(lines)
