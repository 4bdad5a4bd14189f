from __future__ import annotations

import numpy as np
import torch

from fawkes_eval.metrics import hierarchical_bootstrap, topk_hits
from fawkes_eval.perceptual import dssim, image_metrics, ssim


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
