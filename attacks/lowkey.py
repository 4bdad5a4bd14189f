"""LowKey-style cloak: an untargeted push on an ensemble of surrogates, Gaussian smoothing inside the loss."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attacks.surrogates import (
    SurrogateSet,
    as_output_faces,
    faces_to_tensor,
    mixed_precision,
    one_image_guard,
    resolve_device,
    step_loop_runtime,
)
from fawkes_eval.perceptual import SSIMReference, dssim
from fawkes_eval.types import CloakOutput, DifferentiableExtractor

PERCEPTUAL_CHOICES = ("auto", "ssim", "lpips")
# torchvision's AlexNet checkpoint, which the lpips package builds its backbone from: present in the torch hub
# cache, nothing is downloaded.
_ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"


@dataclass(frozen=True)
class LowKeyConfig:
    """Every parameter of a LowKey-style run; the defaults are LowKey's (ICLR 2021), converted to 0..255 units."""

    eps: float = 12.75  # L-inf budget, 0..255 units (LowKey: 0.05 of the 0..1 range)
    steps: int = 50
    step_size: float = 0.6375  # signed-gradient step, 0..255 units (LowKey's lr 0.0025 of the 0..1 range)
    perceptual_weight: float = 0.05  # weight of the perceptual penalty
    perceptual: str = "auto"  # "lpips" (only with its weights on disk), "ssim" (DSSIM), or "auto": lpips if present
    smoothing_kernel: int = 7  # Gaussian smoothing inside the loss: kernel side ...
    smoothing_sigma: float = 3.0  # ... and sigma, in pixels
    batch_size: int = 32
    amp: bool = False  # bfloat16 autocast of the surrogates' forward pass on CUDA (ignored on the CPU)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("eps", 0.0 < self.eps <= 255.0, "in (0, 255] (0..255 units)"),
            ("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer >= 1"),
            ("step_size", self.step_size > 0.0, "> 0"),
            ("perceptual_weight", self.perceptual_weight >= 0.0, ">= 0"),
            ("perceptual", self.perceptual in PERCEPTUAL_CHOICES, f"one of {', '.join(PERCEPTUAL_CHOICES)}"),
            ("smoothing_kernel", isinstance(self.smoothing_kernel, int) and self.smoothing_kernel % 2 == 1
             and self.smoothing_kernel >= 1, "an odd integer >= 1"),
            ("smoothing_sigma", self.smoothing_sigma > 0.0, "> 0"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
        ]  # fmt: skip
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"LowKeyConfig.{name} must be {rule}, got {getattr(self, name)!r}")


def lpips_weights() -> Path | None:
    """The AlexNet checkpoint LPIPS needs, when the lpips package and that file are both here; else None."""
    if importlib.util.find_spec("lpips") is None:
        return None
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / _ALEXNET_CHECKPOINT
    return checkpoint if checkpoint.is_file() else None


def gaussian_smoothing(x: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur of (B, C, H, W), reflect-padded so the size is kept.

    The Gaussian is separable: a row pass and a column pass of ``kernel`` taps (the same result as one
    ``kernel`` x ``kernel`` window to float rounding, at 2k instead of k^2 multiplies a pixel)."""
    coords = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    channels = x.shape[1]
    pad = kernel // 2
    rows = g.view(1, 1, 1, kernel).repeat(channels, 1, 1, 1)
    cols = g.view(1, 1, kernel, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(F.conv2d(padded, rows, groups=channels), cols, groups=channels)


class LowKey:
    """LowKey-style cloak: untargeted ensemble attack with smoothing in the loss and a perceptual penalty.

    Source: Cherepanova et al., "LowKey: Leveraging Adversarial Attacks to Protect Social Media Users from Facial
    Recognition", ICLR 2021; re-implemented on this project's surrogates (LowKey's own four IR-152 / ResNet-152
    models are not available offline).
    Objective: maximise ``mean_k (||f_k(x') - f_k(x)||^2 + ||f_k(G(x')) - f_k(x)||^2) / (2 ||f_k(x)||^2) -
    w * P(x', x)`` by signed-gradient steps, projected onto the L-inf ball ``eps`` and 0..255; G is a Gaussian
    blur (kernel 7, sigma 3), so the cloak survives smoothing; P is LPIPS (AlexNet) when the lpips package and its
    weights are on disk, else DSSIM (``perceptual`` says which, and ``params()`` records it). The last iterate is
    returned; the method draws nothing at random, so the seed does not change the output.
    Distance: L-inf <= ``eps`` (0..255 units); DSSIM is measured and returned, not budgeted.
    Arguments: ``surrogates``: differentiable extractors of one alignment geometry (any number: the ensemble);
    ``config``: a ``LowKeyConfig``; ``device``: torch device (CUDA when available by default).
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed)`` -> ``CloakOutput(faces float32 (N, S, S, 3) in 0..255,
    dssim (N,), seconds)``; S is the largest template size among the surrogates.
    Example: ``LowKey([MobileFace(), HseFaceRes()]).cloak(faces, seed=0)``.
    """

    def __init__(
        self,
        surrogates: Sequence[DifferentiableExtractor],
        config: LowKeyConfig | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config if config is not None else LowKeyConfig()
        self.name = "lowkey"
        self.device = resolve_device(device)
        self.surrogates = SurrogateSet(surrogates, self.device, "LowKey")
        self.template = self.surrogates.template
        self.perceptual = self._resolve_perceptual()
        self._penalty = self._perceptual_penalty()

    def params(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "perceptual_used": self.perceptual,
            "surrogates": self.surrogates.names,
            "template": self.template,
        }

    def _resolve_perceptual(self) -> str:
        wanted = self.config.perceptual
        if wanted == "ssim" or (wanted == "auto" and lpips_weights() is None):
            return "ssim"
        if lpips_weights() is None:
            raise ValueError(
                "LowKey perceptual='lpips' needs the lpips package and torchvision's AlexNet checkpoint at "
                f"{Path(torch.hub.get_dir()) / 'checkpoints' / _ALEXNET_CHECKPOINT}; this installation lacks one of "
                "them and fawkes-eval never downloads weights (use perceptual='ssim')"
            )
        return "lpips"

    def _perceptual_penalty(self) -> Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        """For a clean 0..255 batch, the per-image perceptual distance of a changed batch to it (the clean side's
        part is computed once per batch)."""
        if self.perceptual == "ssim":
            return lambda clean: SSIMReference(clean).dssim
        import lpips  # type: ignore[import-not-found]  # optional: used only when present with its weights

        net = lpips.LPIPS(net="alex", verbose=False).to(self.device).eval()

        def against(clean: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            scaled = clean / 127.5 - 1.0
            return lambda a: net(a / 127.5 - 1.0, scaled).flatten()

        return against

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8:
            raise ValueError(f"LowKey.cloak expects uint8 faces, got {faces.dtype}")
        x_all = faces_to_tensor(faces, self.surrogates.size)
        out_faces, out_dssim = [], []
        for i in range(0, len(x_all), self.config.batch_size):
            x = x_all[i : i + self.config.batch_size]
            n = len(x)
            batch = one_image_guard(x, self.device).to(self.device, memory_format=torch.channels_last)
            with step_loop_runtime(self.device):
                cloaked = self._cloak_batch(batch)[:n]
            out_faces.append(cloaked)
            out_dssim.append(dssim(cloaked, x.to(self.device)).cpu())
        return CloakOutput(
            faces=as_output_faces(out_faces, self.surrogates.size),
            dssim=torch.cat(out_dssim).numpy() if out_dssim else np.zeros(0, np.float32),
            seconds=time.perf_counter() - start,
        )

    def feature_distance(self, clean: np.ndarray, cloaked: np.ndarray) -> np.ndarray:
        """``||f(x') - f(x)|| / ||f(x)||`` per image and surrogate: float32 (N, len(surrogates))."""
        return self.surrogates.feature_distance(clean, cloaked, self.config.batch_size)

    def _cloak_batch(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        with torch.no_grad(), mixed_precision(self.device, cfg.amp):
            clean = [f.float() for f in self.surrogates.embed(x)]
        clean_sq = [f.pow(2).sum(dim=1) for f in clean]
        penalty = self._penalty(x)
        adv = x.clone()
        for _ in range(cfg.steps):
            adv.requires_grad_(True)
            with mixed_precision(self.device, cfg.amp):
                plain = self.surrogates.embed(adv)
                smoothed = self.surrogates.embed(gaussian_smoothing(adv, cfg.smoothing_kernel, cfg.smoothing_sigma))
            terms = [
                ((fp.float() - f0).pow(2).sum(dim=1) + (fs.float() - f0).pow(2).sum(dim=1)) / (2.0 * n0)
                for fp, fs, f0, n0 in zip(plain, smoothed, clean, clean_sq, strict=True)
            ]
            gain = torch.stack(terms).mean(dim=0) - cfg.perceptual_weight * penalty(adv)
            (grad,) = torch.autograd.grad(gain.sum(), [adv])
            with torch.no_grad():
                adv = adv.detach() + cfg.step_size * grad.sign()
                adv = (x + (adv - x).clamp(-cfg.eps, cfg.eps)).clamp(0.0, 255.0)
        return adv.detach()
