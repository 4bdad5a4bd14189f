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
