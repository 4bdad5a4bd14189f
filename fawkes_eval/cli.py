"""The ``fawkes-eval`` command. Heavy imports happen inside each verb, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _add_audit_options(p: argparse.ArgumentParser, demo: bool) -> None:
    from_demo = " (demo default shown)" if demo else ""
    p.add_argument("--cloaks", type=_csv, help=f"comma-separated cloak specs{from_demo}, e.g. fawkes-v1.0:mid,noise:mid")
    p.add_argument("--surrogates", type=_csv, help="differentiable extractors the cloak optimises against")
    p.add_argument("--victims", type=_csv, help="extractors the trackers are built on")
    p.add_argument("--trackers", type=_csv, help="trackers, e.g. 1nn,logreg")
    p.add_argument("--protected", type=_csv, help="identities to protect (default: chosen at random with the seed)")
    p.add_argument("--n-protected", type=int, help="how many identities to protect when --protected is not given")
    p.add_argument("--seeds", type=lambda s: tuple(int(x) for x in _csv(s)), help="comma-separated seeds")
    p.add_argument("--leak-ratio", type=float, help="fraction of protected training photos left clean")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--out", type=Path, default=Path("fawkes-eval-out"), help="folder for reports (default: %(default)s)")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    mapping = {
        "cloaks": "cloaks", "surrogates": "surrogates", "victims": "victims", "trackers": "trackers",
        "protected": "protected_users", "n_protected": "n_protected", "seeds": "seeds",
        "leak_ratio": "leak_ratio", "experiment": "experiment",
    }
    return {field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fawkes-eval", description="Audit face-recognition privacy cloaks against many recognizers."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser(
        "demo", help="offline demo: bundled LFW sample, Fawkes v1.0 low/mid/high + noise control, 3 victims",
        description="Runs the protection protocol on the bundled 10 x 10 LFW sample with bundled models, offline. "
        "Prints the result table, writes an HTML/Markdown report and logs MLflow runs (local sqlite store unless "
        "MLFLOW_TRACKING_URI is set).",
    )
    _add_audit_options(demo, demo=True)

    audit = verbs.add_parser("audit", help="run the protection protocol on your own identity-folder dataset")
    audit.add_argument("--data", type=Path, required=True, help="dataset root: DATA/<identity>/<image>")
    audit.add_argument("--subset", type=Path, help="file listing image paths relative to --data, one per line")
    audit.add_argument("--name", default="audit", help="name of this audit (report folder, MLflow parent run)")
    _add_audit_options(audit, demo=False)

    zoo = verbs.add_parser("zoo", help="the model zoo: list it, or check its accuracy on a dataset")
    zoo_verbs = zoo.add_subparsers(dest="zoo_verb", required=True)
    zoo_verbs.add_parser("list", help="list the registered extractors with their metadata")
    check = zoo_verbs.add_parser("check", help="embed a dataset and print 1-NN / logistic k-fold accuracy per model")
    check.add_argument("--data", type=Path, required=True, help="dataset root: DATA/<identity>/<image>")
    check.add_argument("--subset", type=Path, help="file listing image paths relative to --data")
    check.add_argument("--models", type=_csv, help="comma-separated extractor names (default: all)")
    check.add_argument("--folds", type=int, default=5, help="stratified folds (default: %(default)s)")
    check.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fawkes_eval.data import DatasetError
    from fawkes_eval.registry import UnknownComponentError

    try:
        return _run(args)
    except (UnknownComponentError, DatasetError) as e:
        print(f"fawkes-eval: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.verb in ("demo", "audit"):
        from fawkes_eval.runner import DEMO_DATA, AuditConfig, run_audit

        base = {"data": str(DEMO_DATA), "name": "demo", "experiment": "fawkes-eval-demo"} if args.verb == "demo" else {
            "data": str(args.data), "subset": str(args.subset) if args.subset else None, "name": args.name}
        config = AuditConfig(**{**base, **_overrides(args)})
        run_audit(config, args.out)
        return 0
    if args.verb == "zoo":
        from fawkes_eval import zoo

        if args.zoo_verb == "list":
            zoo.print_zoo()
            return 0
        return zoo.check(args.data, args.subset, args.models, args.folds, args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
