"""Cloak generators, one file each, registered by name and version (``fawkes-v1.0:mid``)."""

from fawkes_eval.registry import CLOAKS

_FAWKES_V1_MODES = {mode: {"mode": mode} for mode in ("low", "mid", "high")}

CLOAKS.register_lazy(
    "fawkes-v1.0", "attacks.fawkes_v1:FawkesV1", modes=_FAWKES_V1_MODES,
    summary="Fawkes v1.0.x: untargeted feature-space push under a DSSIM budget (tanh space, adaptive weight)",
)
CLOAKS.register_lazy(
    "noise", "attacks.noise:NoiseCloak", modes=_FAWKES_V1_MODES,
    summary="Control: random noise scaled to the same DSSIM as the Fawkes v1.0 mode of the same name",
)
CLOAKS.register_lazy(
    "fawkes-v1.0-early", "attacks.fawkes_v1:FawkesV1Early", modes=_FAWKES_V1_MODES,
    summary="Fawkes v1.0 with the earlier 1.0.x presets (low 0.005/25, mid 0.01/50, high 0.015/100)",
)
CLOAKS.register_lazy(
    "fawkes-v0.3", "attacks.fawkes_v03:FawkesV03",
    modes={mode: {"mode": mode} for mode in ("min", "low", "mid", "high", "ultra")},
    summary="Fawkes v0.3: targeted push towards a far identity of a candidate pool under a DSSIM budget",
)
CLOAKS.register_lazy(
    "lowkey", "attacks.lowkey:LowKey",
    summary="LowKey-style: untargeted ensemble attack, Gaussian smoothing in the loss, perceptual penalty, L-inf 12.75",
)
CLOAKS.register_lazy(
    "art-feature-adversaries", "attacks.art_baseline:ArtFeatureAdversaries",
    summary="Baseline: ART's FeatureAdversariesPyTorch towards a far identity's faces, L-inf 15, no SSIM budget",
)
CLOAKS.register_lazy(
    "external", "attacks.external:ExternalCloak",
    summary="Cloaks made by another tool, imported as clean_dir / cloaked_dir pairs matched by relative path",
)
