"""The clean baseline: photos uploaded as they are."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fawkes_eval.types import CloakOutput


@dataclass(frozen=True)
class NoCloakConfig:
    """The baseline has no parameter."""


class NoCloak:
    """No cloak: every face is returned unchanged (DSSIM 0).

    Source: the clean baseline of the protection protocol (DESIGN.md section 2): a campaign that holds ``none``
    measures each victim/tracker's clean error on the same users and queries as every cloak, so a cloak's
    protection is reported above it.
    Distance: none (DSSIM 0 by construction).
    Arguments: ``template``: alignment template of the input faces; ``config``: the empty ``NoCloakConfig``.
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed)`` -> ``CloakOutput(faces float32 (N, S, S, 3), dssim (N,)
    zeros, seconds)``.
    Example: ``NoCloak("dlib-150").cloak(faces, seed=0)``.
    """

    def __init__(self, template: str = "dlib-150", config: NoCloakConfig | None = None) -> None:
        self.template = template
        self.name = "none"
        self.config = config or NoCloakConfig()

    def params(self) -> dict[str, object]:
        return {"template": self.template}

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"NoCloak.cloak expects uint8 faces (N, S, S, 3), got {faces.dtype} {faces.shape}")
        return CloakOutput(faces.astype(np.float32), np.zeros(len(faces), np.float32), time.perf_counter() - start)
