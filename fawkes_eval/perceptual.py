"""Perceptual cost of a cloak: SSIM / DSSIM (differentiable, in PyTorch), PSNR, L-inf and L2 in 0..255 units.

SSIM follows Wang et al. 2004 with the usual constants (11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
valid convolution), averaged over channels and positions: the definition Fawkes' DSSIM budget uses. The Gaussian
window is separable, so every local statistic is two 1-D passes (a row pass, then a column pass) rather than one
11x11 window: 22 taps a pixel instead of 121, the same numbers to float rounding (``tests/test_metrics.py``).
The maps blurred together are stacked along the batch, not the channels: each map's slice of the result is then
contiguous, and the per-pixel algebra on it runs over dense memory. Stacked along the channels of a channels-last
tensor, each map is a strided view with three floats per run, and every operation on it is several times slower
(measured in ``benchmarks/RESULTS.md``, issue 15).

``SSIMReference`` is the same SSIM for a cloak's step loop, where one side (the clean batch) never changes: the
clean side's statistics are computed once, each call blurs three maps instead of five, and the gradient is the
closed form of SSIM's derivative (one transposed blur of three maps) instead of autograd through some twenty
image-sized operations. It also folds the batch into the channels (``_fold``), so that its depthwise blur runs
N x C channels wide rather than three.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur(maps: torch.Tensor, g: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """Separable Gaussian blur of every channel of (N, K, H, W), as two grouped 1-D convolutions (one channel per
    group, so channels never mix). ``transpose=False``: valid (H - w + 1, W - w + 1); ``transpose=True``: the
    adjoint of the valid blur, from (H - w + 1, W - w + 1) back to (H, W) (a full convolution with the flipped
    window), which is what the valid blur's gradient is."""
    k, w = maps.shape[1], g.numel()
    taps = g.flip(0) if transpose else g
    kx = taps.view(1, 1, 1, w).repeat(k, 1, 1, 1)
    ky = taps.view(1, 1, w, 1).repeat(k, 1, 1, 1)
    pad = w - 1 if transpose else 0
    return F.conv2d(F.conv2d(maps, kx, padding=(0, pad), groups=k), ky, padding=(pad, 0), groups=k)


def _constants(max_val: float) -> tuple[float, float]:
    return (SSIM_K1 * max_val) ** 2, (SSIM_K2 * max_val) ** 2


def ssim(x: torch.Tensor, y: torch.Tensor, max_val: float = 255.0, window: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Per-image SSIM of (N, C, H, W) batches in 0..max_val; returns (N,)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    g = _gaussian_window(window, sigma, x.device, x.dtype)
    # the five local statistics in one blur, stacked along the batch (see the module's docstring)
    mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y]), g).chunk(5)

    c1, c2 = _constants(max_val)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(dim=1)


def dssim(x: torch.Tensor, y: torch.Tensor, max_val: float = 255.0) -> torch.Tensor:
    """DSSIM = (1 - SSIM) / 2, per image."""
    return (1.0 - ssim(x, y, max_val)) / 2.0


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (1, H, W, N C), contiguous: the batch's images side by side as the channels of one image, in
    NHWC order. The depthwise blur then runs N C channels wide (three channels leave most of a vector register
    idle), and every per-pixel operation runs over dense memory."""
    n, c, h, w = x.shape
    return x.permute(2, 3, 0, 1).reshape(1, h, w, n * c)


def _unfold(folded: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of ``_fold``: (1, H, W, N C) -> (N, C, H, W), channels-last."""
    _, h, w, nc = folded.shape
    return folded.reshape(h, w, n, nc // n).permute(2, 0, 1, 3).contiguous().permute(0, 3, 1, 2)


def _blur_folded(maps: torch.Tensor, g: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``_blur`` of folded maps stacked along the first axis, (M, H, W, K) -> (M, H', W', K), contiguous: the
    convolution sees a channels-last (M, K, H, W) batch, so stacking maps is a plain copy and slicing one is free."""
    return _blur(maps.permute(0, 3, 1, 2), g, transpose).permute(0, 2, 3, 1).contiguous()


class SSIMReference:
    """SSIM and DSSIM of images against one fixed reference batch ``y`` (N, C, H, W) in 0..max_val.

    ``ssim(x)`` equals ``ssim(x, y)`` to float rounding and is differentiable in ``x`` (not in ``y``, which is a
    constant here). What is constant per batch is computed once: the window, ``y``'s local mean and variance with
    the stabilising constants folded in. A call blurs ``x``, ``x*x`` and ``x*y`` (three maps, not five); when the
    gradient is wanted, it also forms the three maps of SSIM's closed-form derivative by the blurred statistics
    while they are in cache. The backward pass scales them by each image's upstream gradient, takes them back
    through the window by one transposed blur, then to ``x`` by the chain rule (``d mu_x/dx``,
    ``2x d E[x^2]/dx``, ``y d E[xy]/dx``). Internally the batch is folded into the channels (``_fold``), the
    blur's fast layout; ``x`` may come in any layout and its gradient leaves channels-last.
    """

    def __init__(self, y: torch.Tensor, max_val: float = 255.0, window: int = SSIM_WINDOW,
                 sigma: float = SSIM_SIGMA) -> None:
        if y.dim() != 4:
            raise ValueError(f"SSIMReference needs an (N, C, H, W) reference, got {tuple(y.shape)}")
        with torch.no_grad():
            self.shape = tuple(y.shape)
            self.y = _fold(y.detach())
            self.window = _gaussian_window(window, sigma, y.device, y.dtype)
            self.c1, self.c2 = _constants(max_val)
            mu_y, eyy = _blur_folded(torch.cat([self.y, self.y * self.y]), self.window).chunk(2)
            self.mu_y = mu_y
            self.mu_y2_c1 = mu_y * mu_y + self.c1  # mu_y^2 + c1: B1 = mu_x^2 + this
            self.syy_c2 = eyy - mu_y * mu_y + self.c2  # sigma_y^2 + c2: B2 = sigma_x^2 + this

    def ssim(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image SSIM of ``x`` (the reference's shape) against the reference; returns (N,)."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"SSIMReference: images {tuple(x.shape)} differ from the reference {self.shape}")
        out: torch.Tensor = _SSIMToReference.apply(x, self)
        return out

    def dssim(self, x: torch.Tensor) -> torch.Tensor:
        """DSSIM = (1 - SSIM) / 2 per image against the reference."""
        return (1.0 - self.ssim(x)) / 2.0


class _SSIMToReference(torch.autograd.Function):
    """SSIM = mean of A1 A2 / (B1 B2) with A1 = 2 mu_x mu_y + c1, A2 = 2 (E[xy] - mu_x mu_y) + c2,
    B1 = mu_x^2 + mu_y^2 + c1, B2 = E[x^2] - mu_x^2 + sigma_y^2 + c2; its derivatives by the blurred maps:
    dS/d mu_x = 2 (mu_y (A2 - A1) - S mu_x (B2 - B1)) / (B1 B2), dS/d E[x^2] = -S / B2, dS/d E[xy] = 2 A1 / (B1 B2)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ref: SSIMReference) -> torch.Tensor:
        n, c = x.shape[:2]
        xf = _fold(x)
        blurred = _blur_folded(torch.cat([xf, xf * xf, xf * ref.y]), ref.window)
        mu_x, exx, exy = blurred.chunk(3)
        mu_xy = mu_x * ref.mu_y
        mu_x2 = mu_x.square()
        # the blurred maps are this call's own, so they are updated in place: fewer image-sized buffers
        a1 = mu_xy.mul(2.0).add_(ref.c1)
        a2 = exy.sub_(mu_xy).mul_(2.0).add_(ref.c2)
        b2 = exx.sub_(mu_x2).add_(ref.syy_c2)
        b1 = mu_x2.add_(ref.mu_y2_c1)
        inv_d = b1.mul(b2).reciprocal_()
        s_map = a1.mul(a2).mul_(inv_d)
        h, w = s_map.shape[1:3]
        ctx.ref, ctx.n, ctx.per_image_size = ref, n, c * h * w
        if ctx.needs_input_grad[0]:
            # dS by (mu_x, E[x^2], E[xy]), stacked as the transposed blur's input
            coef = torch.empty_like(blurred)
            d_mu, d_exx, d_exy = coef.chunk(3)
            torch.div(s_map, b2, out=d_exx).neg_()
            torch.mul(a1, inv_d, out=d_exy).mul_(2.0)
            # B2 is not needed after dS/d E[x^2]: S mu_x (B2 - B1) is formed in its buffer
            spread = b2.sub_(b1).mul_(mu_x).mul_(s_map)
            torch.sub(a2, a1, out=d_mu).mul_(ref.mu_y).sub_(spread).mul_(inv_d).mul_(2.0)
            ctx.save_for_backward(xf, coef)
        # per image: sum over positions first (ATen's column sum keeps float32 precise), then over channels
        per_channel = s_map.reshape(h * w, n * c).sum(dim=0)
        return per_channel.view(n, c).sum(dim=1) / ctx.per_image_size

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        xf, coef = ctx.saved_tensors
        ref: SSIMReference = ctx.ref
        # d mean / d S_map of each image, repeated over its channels as they lie in the folded layout
        per_channel = (grad / ctx.per_image_size).repeat_interleave(xf.shape[3] // ctx.n)
        back_mu, back_xx, back_xy = _blur_folded(coef * per_channel, ref.window, transpose=True).chunk(3)
        return _unfold(torch.addcmul(back_mu, xf, back_xx, value=2.0).addcmul_(ref.y, back_xy), ctx.n), None


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
