"""Threat models: how a third party uses photos, and what a cloak must withstand."""

from fawkes_eval.registry import SCENARIOS

SCENARIOS.register_lazy(
    "protection", "scenarios.protection:ProtectionScenario",
    summary="Fawkes' protection protocol: train on cloaked uploads, query with clean photos (PSR with CI)",
)
SCENARIOS.register_lazy(
    "identification", "scenarios.identification:kfold_identification",
    summary="Clean k-fold identification accuracy of an extractor with a tracker (the zoo check)",
)
