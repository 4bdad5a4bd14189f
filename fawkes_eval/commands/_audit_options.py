"""Options shared by the verbs that read a dataset (demo, audit, sweep, zoo check)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_face_options(p: argparse.ArgumentParser, aligned: bool = True) -> None:
    """``--detector NAME`` and (unless ``aligned`` is False) ``--aligned TEMPLATE``: how faces are found in a dataset.
    Both are checked where they are used (``check_components``, ``FaceAligner``): naming the templates here would
    import the aligner, and ``--help`` imports nothing heavy."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--detector", metavar="NAME",
                       help="face detector: dlib-hog (default) or scrfd (needs the [insightface] extra)")
    if aligned:
        group.add_argument("--aligned", metavar="TEMPLATE",
                           help="the photos are face crops already on this template (arcface-112, arcface-224, "
                                "dlib-150): nothing is detected, other templates are derived from it")


def add_audit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cloaks", type=csv, help="comma-separated cloak specs, e.g. fawkes-v1.0:mid,noise:mid")
    p.add_argument("--surrogates", type=csv, help="differentiable extractors the cloak optimises against")
    p.add_argument("--victims", type=csv, help="extractors the trackers are built on")
    p.add_argument("--trackers", type=csv, help="trackers, e.g. 1nn,logreg")
    p.add_argument("--protected", type=csv, help="identities to protect (default: chosen at random with the seed)")
    p.add_argument("--n-protected", type=int, help="how many identities to protect when --protected is not given")
    p.add_argument("--seeds", type=lambda s: tuple(int(x) for x in csv(s)), help="comma-separated seeds")
    p.add_argument("--leak-ratio", type=float, help="fraction of protected training photos left clean")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--out", type=Path, default=Path("fawkes-eval-out"),
                   help="results folder; results land in OUT/<name>/ (default: %(default)s)")
    add_face_options(p)


def run_with_overrides(args: argparse.Namespace, base: dict[str, object]) -> int:
    from fawkes_eval.campaign import CampaignError
    from fawkes_eval.runner import AuditConfig, run_audit

    mapping = {
        "cloaks": "cloaks", "surrogates": "surrogates", "victims": "victims", "trackers": "trackers",
        "protected": "protected_users", "n_protected": "n_protected", "seeds": "seeds",
        "leak_ratio": "leak_ratio", "experiment": "experiment", "detector": "detector", "aligned": "aligned",
    }
    overrides = {field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg, None) is not None}
    try:
        outcome = run_audit(AuditConfig(**{**base, **overrides}), args.out)
    except CampaignError as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2
    return outcome.exit_status
