"""Control cloak: seeded random noise scaled per image to the DSSIM budget of a Fawkes v1.0 mode."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from attacks.fawkes_v1 import FAWKES_V1_MODES
from fawkes_eval.perceptual import dssim
from fawkes_eval.types import CloakOutput


@dataclass(frozen=True)
class NoiseConfig:
    """Every parameter of the noise control."""

    target_dssim: float
    max_change: float = 15.0  # per-pixel limit in 0..255 units, the same as Fawkes v1.0
    doublings: int = 16  # rounds that grow the scale's upper bound from 1 until the target is passed
    bisection_steps: int = 30
    batch_size: int = 256

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("target_dssim", 0.0 < self.target_dssim < 1.0, "in (0, 1)"),
            ("max_change", 0.0 < self.max_change <= 255.0, "in (0, 255] (0..255 units)"),
            ("doublings", isinstance(self.doublings, int) and self.doublings >= 0, "an integer >= 0"),
            ("bisection_steps", isinstance(self.bisection_steps, int) and self.bisection_steps >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"NoiseConfig.{name} must be {rule}, got {getattr(self, name)!r}")


# each mode's target: the DSSIM budget of the Fawkes v1.0 mode of the same name
NOISE_MODES: dict[str, NoiseConfig] = {mode: NoiseConfig(target_dssim=c.th) for mode, c in FAWKES_V1_MODES.items()}


class NoiseCloak:
    """Random-noise control at the DSSIM budget of a Fawkes v1.0 mode.

    Source: the control of the protection protocol (DESIGN.md section 2): at the same perceptual cost as a cloak,
    noise should leave recognition intact; if it does not, the harness is wrong.
    Method: per image, u ~ uniform(-1, 1) per pixel and channel (seeded); the change is
    ``max_change * clamp(s * u, -1, 1)``, added and clipped to 0..255, with the scale ``s`` found by bisection so
    that DSSIM reaches ``target_dssim`` from below. Large ``s`` saturates at +-max_change; an image whose DSSIM
    stays under the target even then keeps that saturated noise, and its reported DSSIM says what was reached
    (with the defaults every mode's budget is reachable on natural faces).
    Distance: DSSIM = (1 - SSIM) / 2 on the aligned crop; pixel change within +-max_change (0..255 units).
    Arguments: ``template``: alignment template of the input faces; ``mode``: low, mid or high (target = that
    mode's Fawkes v1.0 ``th``); ``config``: a ``NoiseConfig`` replacing the mode's target.
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed)`` -> ``CloakOutput(faces float32 (N, S, S, 3) in 0..255,
    dssim (N,) achieved, seconds)``. Runs on the CPU: it costs a few SSIMs per image.
    Example: ``NoiseCloak("dlib-150", mode="mid").cloak(faces, seed=0)``.
    """

    def __init__(self, template: str = "dlib-150", mode: str = "mid", config: NoiseConfig | None = None) -> None:
        if mode not in FAWKES_V1_MODES:
            raise ValueError(f"unknown noise mode {mode!r}; modes: {', '.join(FAWKES_V1_MODES)}")
        self.template = template
        self.mode = mode
        self.name = f"noise:{mode}"
        self.config = config if config is not None else NOISE_MODES[mode]

    def params(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "mode": self.mode,
            "preset": self.config == NOISE_MODES[self.mode],
            "template": self.template,
        }

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"NoiseCloak.cloak expects uint8 faces (N, S, S, 3), got {faces.dtype} {faces.shape}")
        gen = torch.Generator().manual_seed(seed)
        out_faces, out_dssim = [], []
        for i in range(0, len(faces), self.config.batch_size):
            x = torch.from_numpy(faces[i : i + self.config.batch_size].astype(np.float32)).permute(0, 3, 1, 2)
            u = torch.rand(x.shape, generator=gen) * 2.0 - 1.0
            noisy, d = self._fit_scale(x, u)
            out_faces.append(noisy.permute(0, 2, 3, 1))
            out_dssim.append(d)
        size = faces.shape[1]
        return CloakOutput(
            faces=torch.cat(out_faces).numpy() if out_faces else np.zeros((0, size, size, 3), np.float32),
            dssim=torch.cat(out_dssim).numpy() if out_dssim else np.zeros(0, np.float32),
            seconds=time.perf_counter() - start,
        )

    def _fit_scale(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image scale by bisection; returns (noisy images, their DSSIM), DSSIM <= target where reachable."""
        cfg = self.config

        def apply(scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            change = cfg.max_change * (scale[:, None, None, None] * u).clamp(-1.0, 1.0)
            noisy = (x + change).clamp(0.0, 255.0)
            return noisy, dssim(noisy, x)

        with torch.no_grad():
            lo = torch.zeros(len(x))
            hi = torch.ones(len(x))
            for _ in range(cfg.doublings):
                below = apply(hi)[1] < cfg.target_dssim
                if not bool(below.any()):
                    break
                lo = torch.where(below, hi, lo)
                hi = torch.where(below, hi * 2.0, hi)
            for _ in range(cfg.bisection_steps):
                mid = (lo + hi) / 2.0
                below = apply(mid)[1] <= cfg.target_dssim
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
            # Images that never reached the target keep their largest scale: as close as the limit allows.
            reached = apply(hi)[1] >= cfg.target_dssim
            return apply(torch.where(reached, lo, hi))
