"""Threat models: how a third party uses photos, and what a cloak must withstand."""

from fawkes_eval.registry import COUNTERMEASURES, SCENARIOS
from scenarios.countermeasures import STRENGTHS

SCENARIOS.register_lazy(
    "protection", "scenarios.protection:ProtectionScenario",
    summary="Fawkes' protection protocol: train on cloaked uploads, query with clean photos (PSR with CI)",
)
SCENARIOS.register_lazy(
    "identification", "scenarios.identification:kfold_identification",
    summary="Clean k-fold identification accuracy of an extractor with a tracker (the zoo check)",
)

_COUNTERMEASURE_CLASSES = {
    "jpeg": ("Jpeg", "JPEG re-encoding at a quality (ART JpegCompression)"),
    "blur": ("GaussianBlur", "Gaussian blur, sigma in pixels"),
    "rescale": ("Rescale", "down-then-up scaling by a factor (bicubic)"),
    "median": ("MedianFilter", "median filter over a window (ART SpatialSmoothing)"),
    "gaussian-noise": ("GaussianNoise", "seeded additive Gaussian noise, sigma in 0..255 units"),
    "bit-depth": ("BitDepth", "bit-depth reduction (ART FeatureSqueezing)"),
}
for _family, (_cls, _summary) in _COUNTERMEASURE_CLASSES.items():
    COUNTERMEASURES.register_lazy(_family, f"scenarios.countermeasures:{_cls}", modes=STRENGTHS[_family], summary=_summary)
SCENARIOS.register_lazy(
    "verification", "scenarios.verification:verify_clean",
    summary="LFW pairs.txt verification: TAR@FAR (leave-one-fold-out thresholds), ROC AUC, EER; dodging_rate beside it",
)
SCENARIOS.register_lazy(
    "adaptive", "scenarios.adaptive:adapt_to_cloak",
    summary="FaceCure's robust-feature attack: fine-tune an extractor on public identities' clean + cloaked photos",
)
