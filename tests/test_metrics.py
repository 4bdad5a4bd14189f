from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fawkes_eval.metrics import hierarchical_bootstrap, topk_hits
from fawkes_eval.perceptual import SSIMReference, dssim, image_metrics, ssim


def test_bootstrap_covers_point_and_narrows() -> None:
    rng = np.random.default_rng(0)
    small = [rng.random(5) < 0.6 for _ in range(4)]
    large = [rng.random(80) < 0.6 for _ in range(4)]
    a = hierarchical_bootstrap(small, seed=1)
    b = hierarchical_bootstrap(large, seed=1)
    assert a.low <= a.value <= a.high
    assert b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low)
    assert hierarchical_bootstrap(small, seed=1) == a  # seeded


def test_bootstrap_degenerate_rate() -> None:
    ci = hierarchical_bootstrap([np.ones(3), np.ones(4)], seed=0)
    assert (ci.value, ci.low, ci.high) == (1.0, 1.0, 1.0)
    assert ci.n_groups == 2 and ci.n_items == 7


def test_topk_hits() -> None:
    ranked = np.array([[1, 2, 3], [3, 2, 1]])
    truth = np.array([2, 2])
    assert topk_hits(ranked, truth, 1).tolist() == [False, False]
    assert topk_hits(ranked, truth, 2).tolist() == [True, True]


def test_ssim_identity_and_noise() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.float64)
    same = image_metrics(img, img)
    assert same["ssim"] == 1.0 and same["dssim"] == 0.0 and same["linf"] == 0.0
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
    m = image_metrics(img, noisy)
    assert 0.0 < m["dssim"] < 0.5 and 15 < m["psnr"] < 30
    t = torch.from_numpy(img).permute(2, 0, 1)[None].requires_grad_(True)
    d = dssim(t, torch.from_numpy(noisy).permute(2, 0, 1)[None])
    d.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()
    assert float(ssim(t.detach(), t.detach())[0]) == 1.0


def _demo_faces(count: int, size: int = 96) -> np.ndarray:
    """Real photos from the bundled LFW sample, centre crops of ``size`` px, float64 (N, 3, size, size)."""
    from fawkes_eval.align import load_photo

    root = Path(__file__).resolve().parent.parent / "fawkes_eval" / "demo_data" / "lfw_sample"
    paths = sorted(root.glob("*/*.jpg"))[:count]
    assert len(paths) == count
    crops = []
    for p in paths:
        img = load_photo(p)
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crops.append(img[top : top + size, left : left + size])
    return np.stack(crops).astype(np.float64).transpose(0, 3, 1, 2)


def _ssim_2d_window(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM with the full 11x11 Gaussian window in one depthwise convolution (the textbook form), per image."""
    coords = torch.arange(11, dtype=x.dtype) - 5.0
    g = torch.exp(-(coords**2) / (2.0 * 1.5**2))
    g = g / g.sum()
    c = x.shape[1]
    window = (g[:, None] * g[None, :]).expand(c, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(dim=1)


def _cloak_like(clean: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (clean + scale * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)).clamp(0.0, 255.0)


def test_separable_ssim_equals_2d_window() -> None:
    clean = torch.from_numpy(_demo_faces(4))
    changed = _cloak_like(clean, 6.0, 0)
    reference = _ssim_2d_window(changed, clean)
    assert torch.all(reference < 0.999) and torch.all(reference > 0.5)  # a real difference, not identical images
    torch.testing.assert_close(ssim(changed, clean), reference, rtol=1e-12, atol=1e-12)
    # float32 and channels-last, as the cloaks run it
    cl = torch.channels_last
    got32 = ssim(changed.float().contiguous(memory_format=cl), clean.float().contiguous(memory_format=cl))
    torch.testing.assert_close(got32.double(), reference, rtol=1e-5, atol=1e-6)


def test_ssim_reference_equals_ssim_value_and_gradient() -> None:
    clean = torch.from_numpy(_demo_faces(3))
    changed = _cloak_like(clean, 4.0, 1).requires_grad_(True)
    (expected_grad,) = torch.autograd.grad(ssim(changed, clean).sum() * 1.0, [changed])
    ref = SSIMReference(clean)
    value = ref.ssim(changed)
    torch.testing.assert_close(value, ssim(changed, clean), rtol=1e-12, atol=1e-12)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)  # per-image upstream gradients differ
    (grad,) = torch.autograd.grad((ref.dssim(changed) * weights).sum(), [changed])
    (expected,) = torch.autograd.grad((dssim(changed, clean) * weights).sum(), [changed])
    assert expected.abs().max() > 0
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))
    assert expected_grad.shape == grad.shape
    # float32 channels-last, the cloak's layout
    cl = torch.channels_last
    x32 = changed.detach().float().contiguous(memory_format=cl).requires_grad_(True)
    ref32 = SSIMReference(clean.float().contiguous(memory_format=cl))
    (g32,) = torch.autograd.grad(ref32.dssim(x32).sum(), [x32])
    assert g32.is_contiguous(memory_format=cl)
    torch.testing.assert_close(g32.double(), grad / weights.view(-1, 1, 1, 1), rtol=1e-3,
                               atol=1e-4 * float(expected.abs().max()))


def test_ssim_reference_float32_at_cloak_scale() -> None:
    """A cloak's batch (8 faces of 150 px, float32, channels-last) against float64 SSIM of the same inputs."""
    cl = torch.channels_last
    clean = torch.from_numpy(_demo_faces(8, size=150)).round()
    changed = _cloak_like(clean, 3.0, 3).round()  # whole grey levels: float32 holds the inputs exactly
    got = SSIMReference(clean.float().contiguous(memory_format=cl)).ssim(changed.float().contiguous(memory_format=cl))
    # float32 SSIM is good to a few 1e-6 (E[x^2] - mu^2 cancels), far inside a DSSIM budget of a few 1e-3; the
    # folded layout's per-image sums must keep it so
    torch.testing.assert_close(got.double(), ssim(changed, clean), rtol=0.0, atol=1e-5)


def test_ssim_reference_gradcheck_and_shape() -> None:
    clean = torch.from_numpy(_demo_faces(2, size=16))
    changed = _cloak_like(clean, 8.0, 2).requires_grad_(True)
    ref = SSIMReference(clean)
    assert torch.autograd.gradcheck(lambda t: ref.ssim(t), (changed,), eps=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="reference"):
        ref.ssim(changed[:1])
