"""Perceptual cost of a cloak: SSIM / DSSIM (differentiable, in PyTorch), PSNR, L-inf and L2 in 0..255 units.

SSIM follows Wang et al. 2004 with the usual constants (11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
valid convolution), averaged over channels and positions: the definition Fawkes' DSSIM budget uses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, max_val: float = 255.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of (N, C, H, W) batches in 0..max_val; returns (N,)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    channels = x.shape[1]
    g = _gaussian_window(window, sigma, x.device, x.dtype)
    # the five local statistics in one separable grouped convolution: five separate passes cost ~5x more
    kx = g.view(1, 1, 1, window).repeat(5 * channels, 1, 1, 1)
    ky = g.view(1, 1, window, 1).repeat(5 * channels, 1, 1, 1)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    blurred = F.conv2d(F.conv2d(stacked, kx, groups=5 * channels), ky, groups=5 * channels)
    mu_x, mu_y, exx, eyy, exy = blurred.split(channels, dim=1)

    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(dim=1)


def dssim(x: torch.Tensor, y: torch.Tensor, max_val: float = 255.0) -> torch.Tensor:
    """DSSIM = (1 - SSIM) / 2, per image."""
    return (1.0 - ssim(x, y, max_val)) / 2.0


def image_metrics(clean: np.ndarray, changed: np.ndarray) -> dict[str, float]:
    """DSSIM, SSIM, PSNR (dB), L-inf and L2 between two HxWx3 images in 0..255."""
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(changed, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ta = torch.from_numpy(a).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b).permute(2, 0, 1)[None]
    s = float(ssim(ta, tb)[0])
    mse = float(np.mean((a - b) ** 2))
    return {
        "dssim": (1.0 - s) / 2.0,
        "ssim": s,
        "psnr": float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse),
        "linf": float(np.max(np.abs(a - b))),
        "l2": float(np.linalg.norm(a - b)),
    }
