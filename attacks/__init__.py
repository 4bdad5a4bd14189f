"""Cloak generators, one file each, registered by name and version (``fawkes-v1.0:mid``).

Each registration declares, readable without importing the generator (``CLOAKS.declared(name)``):
- ``requires``: what its constructor is given besides its ``config``: ``surrogates`` (differentiable
  extractors sharing one template), ``template`` (the alignment template of its faces, for controls),
  ``aligner`` (a ``FaceAligner``, for cloaks read from files);
- ``config``: its config dataclass (``"module:attr"``), whose fields are exactly the options a campaign entry may
  set; ``presets``: the config of each mode (``"module:attr"`` of a mode -> config mapping), which options
  override;
- ``per_user``: ``cloak(faces, seed, users=...)`` takes each face's user (targeted cloaks choose a target per
  user and list them in ``last_targets``);
- ``whole_photos``: the generator serves whole cloaked photos (``cloaked_photo_for``) rather than crops.
``fawkes_eval.components.build_generator`` reads these; nothing inspects a constructor's signature.
"""

from fawkes_eval.registry import CLOAKS

_FAWKES_V1_MODES = {mode: {"mode": mode} for mode in ("low", "mid", "high")}
_OPTIMISES = ("surrogates",)
_CONTROL = ("template",)

CLOAKS.register_lazy(
    "fawkes-v1.0", "attacks.fawkes_v1:FawkesV1", modes=_FAWKES_V1_MODES,
    summary="Fawkes v1.0.x: untargeted feature-space push under a DSSIM budget (tanh space, adaptive weight)",
    requires=_OPTIMISES, config="attacks.fawkes_v1:FawkesV1Config", presets="attacks.fawkes_v1:FAWKES_V1_MODES",
)
CLOAKS.register_lazy(
    "noise", "attacks.noise:NoiseCloak", modes=_FAWKES_V1_MODES,
    summary="Control: random noise scaled to the same DSSIM as the Fawkes v1.0 mode of the same name",
    requires=_CONTROL, config="attacks.noise:NoiseConfig", presets="attacks.noise:NOISE_MODES",
)
CLOAKS.register_lazy(
    "none", "attacks.none:NoCloak",
    summary="Clean baseline: photos uploaded unchanged (each victim/tracker's clean error on the same users)",
    requires=_CONTROL, config="attacks.none:NoCloakConfig",
)
CLOAKS.register_lazy(
    "fawkes-v1.0-early", "attacks.fawkes_v1:FawkesV1Early", modes=_FAWKES_V1_MODES,
    summary="Fawkes v1.0 with the earlier 1.0.x presets (low 0.005/25, mid 0.01/50, high 0.015/100)",
    requires=_OPTIMISES, config="attacks.fawkes_v1:FawkesV1Config", presets="attacks.fawkes_v1:FAWKES_V1_EARLY_MODES",
)
CLOAKS.register_lazy(
    "fawkes-v0.3", "attacks.fawkes_v03:FawkesV03",
    modes={mode: {"mode": mode} for mode in ("min", "low", "mid", "high", "ultra")},
    summary="Fawkes v0.3: targeted push towards a far identity of a candidate pool under a DSSIM budget",
    requires=_OPTIMISES, config="attacks.fawkes_v03:FawkesV03Config", presets="attacks.fawkes_v03:FAWKES_V03_MODES",
    per_user=True,
)
CLOAKS.register_lazy(
    "lowkey", "attacks.lowkey:LowKey",
    summary="LowKey-style: untargeted ensemble attack, Gaussian smoothing in the loss, perceptual penalty, L-inf 12.75",
    requires=_OPTIMISES, config="attacks.lowkey:LowKeyConfig",
)
CLOAKS.register_lazy(
    "art-feature-adversaries", "attacks.art_baseline:ArtFeatureAdversaries",
    summary="Baseline: ART's FeatureAdversariesPyTorch towards a far identity's faces, L-inf 15, no SSIM budget",
    requires=_OPTIMISES, config="attacks.art_baseline:ArtFeatureAdversariesConfig", per_user=True,
)
CLOAKS.register_lazy(
    "external", "attacks.external:ExternalCloak",
    summary="Cloaks made by another tool, imported as clean_dir / cloaked_dir pairs matched by relative path",
    requires=("template", "aligner"), config="attacks.external:ExternalConfig", whole_photos=True,
)
