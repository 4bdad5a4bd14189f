"""Threat models: how a third party uses photos, and what a cloak must withstand."""

from fawkes_eval.registry import EVALUATIONS, SCENARIOS
from scenarios import countermeasures as countermeasures  # noqa: F401  (registers each countermeasure: light)

SCENARIOS.register_lazy(
    "protection", "scenarios.protection:Protection",
    summary="Fawkes' protection protocol: train on cloaked uploads, query with clean photos (PSR with CI)",
    config="scenarios.protection:ProtectionScenarioConfig", augmentations=True,  # trains trackers: robust option
)
SCENARIOS.register_lazy(
    "verification", "scenarios.verification:Verification",
    summary="Verification and dodging: TAR@FAR, AUC, EER of the clean model; share of genuine pairs a cloaked photo "
            "takes below the FAR threshold (CIs)",
    config="scenarios.verification:VerificationScenarioConfig",
    trackers=False,  # compares embeddings itself: its cells are not crossed with the trackers axis
)
SCENARIOS.register_lazy(
    "search", "scenarios.search:Search",
    summary="Reverse face search, both directions: (a) clean query vs cloaked uploads, (b) cloaked query vs one clean "
            "photo; protection@1/5/10 and mAP (CIs), optional extra distractors",
    config="scenarios.search:SearchConfig",
    trackers=False,  # compares embeddings itself: its cells are not crossed with the trackers axis
)
SCENARIOS.register_lazy(
    "linkability", "scenarios.linkability:Linkability",
    summary="Linkability: a cloaked photo vs the user's other cloaked photos among distractors; recall@k, "
            "same-user vs impostor similarity",
    config="scenarios.linkability:LinkabilityConfig",
    trackers=False,  # compares embeddings itself: its cells are not crossed with the trackers axis
)
EVALUATIONS.register_lazy(
    "identification", "scenarios.identification:kfold_identification",
    summary="Clean k-fold identification accuracy of an extractor with a tracker (the zoo check)",
)

EVALUATIONS.register_lazy(
    "verification", "scenarios.verification:verify_clean",
    summary="LFW pairs.txt verification: TAR@FAR (leave-one-fold-out thresholds), ROC AUC, EER; dodging_rate beside it",
)
EVALUATIONS.register_lazy(
    "adaptive", "scenarios.adaptive:adapt_to_cloak",
    summary="FaceCure's robust-feature attack: fine-tune an extractor on public identities' clean + cloaked photos",
)
EVALUATIONS.register_lazy(
    "facecure", "scenarios.adaptive:adapted_victim",
    summary="a victim entry's adapt: facecure: the victim fine-tuned on the cell's cloak over public identities "
            "(cached by content), with its clean-only control",
    adapts_victims=True,
)
