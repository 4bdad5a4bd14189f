"""Fawkes v1.0 cloak: an untargeted push in the surrogates' feature space under a DSSIM budget."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from attacks.surrogates import mixed_precision, step_loop_runtime
from fawkes_eval.perceptual import SSIMReference
from fawkes_eval.types import CloakOutput, DifferentiableExtractor

# Fawkes maps 0..255 to (-1, 1) times this before arctanh, so that 0 and 255 stay finite in tanh space.
_TANH_SCALE = 2.0 - 1e-6


@dataclass(frozen=True)
class FawkesV1Config:
    """Every parameter of a Fawkes v1.0 run; the presets in ``FAWKES_V1_MODES`` are the 1.0.x release values."""

    th: float  # DSSIM budget
    steps: int  # optimisation steps
    lr: float  # Adadelta learning rate
    n_surrogates: int  # extractors the mode asks for (Fawkes: 1 at low, 2 at mid and high)
    max_change: float = 15.0  # per-pixel limit in 0..255 units (Fawkes' 15/255)
    c: float = 1e6  # weight of the DSSIM penalty c * max(DSSIM - th, 0)^2 (Fawkes CLI; its library uses 1e7)
    weight_init: float = 1.0  # adaptive weight of the feature term at the start, and where it resets to
    weight_min: float = 1.0 / 128
    weight_max: float = 256.0
    weight_up_below: float = 0.9  # weight doubles while DSSIM <= this x th
    weight_down_above: float = 1.1  # weight halves while DSSIM >= this x th; also the keep tolerance
    init_noise: float = 1e-4  # starting modifier: uniform(-1, 1) x this, in tanh space
    first_kick: float = 0.01  # after step 1, an extra step of -first_kick x sign(gradient) in tanh space
    adadelta_rho: float = 0.95  # tf.keras Adadelta defaults, which Fawkes runs with
    adadelta_eps: float = 1e-7
    batch_size: int = 32
    amp: bool = False  # bfloat16 autocast of the surrogates' forward pass on CUDA (ignored on the CPU)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("th", 0.0 < self.th < 1.0, "in (0, 1)"),
            ("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer >= 1"),
            ("lr", self.lr > 0.0, "> 0"),
            ("n_surrogates", isinstance(self.n_surrogates, int) and self.n_surrogates >= 1, "an integer >= 1"),
            ("max_change", 0.0 < self.max_change <= 255.0, "in (0, 255] (0..255 units)"),
            ("c", self.c >= 0.0, ">= 0"),
            ("weight_min", self.weight_min > 0.0, "> 0"),
            ("weight_max", self.weight_min <= self.weight_max, f">= weight_min ({self.weight_min})"),
            ("weight_init", self.weight_min <= self.weight_init <= self.weight_max, "within [weight_min, weight_max]"),
            ("weight_up_below", 0.0 < self.weight_up_below < 1.0, "in (0, 1)"),
            ("weight_down_above", self.weight_down_above > 1.0, "> 1"),
            ("init_noise", self.init_noise >= 0.0, ">= 0"),
            ("first_kick", self.first_kick >= 0.0, ">= 0"),
            ("adadelta_rho", 0.0 <= self.adadelta_rho < 1.0, "in [0, 1)"),
            ("adadelta_eps", self.adadelta_eps > 0.0, "> 0"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"FawkesV1Config.{name} must be {rule}, got {getattr(self, name)!r}")


FAWKES_V1_MODES: dict[str, FawkesV1Config] = {
    "low": FawkesV1Config(th=0.004, steps=40, lr=25.0, n_surrogates=1),
    "mid": FawkesV1Config(th=0.012, steps=75, lr=20.0, n_surrogates=2),
    "high": FawkesV1Config(th=0.017, steps=150, lr=15.0, n_surrogates=2),
}

# Earlier 1.0.x releases: lower budgets and fewer steps at the same learning rates and extractor counts. Kept as a
# version of its own (fawkes-v1.0-early), a real case of silent parameter drift for regression tests to catch.
FAWKES_V1_EARLY_MODES: dict[str, FawkesV1Config] = {
    "low": FawkesV1Config(th=0.005, steps=25, lr=25.0, n_surrogates=1),
    "mid": FawkesV1Config(th=0.01, steps=50, lr=20.0, n_surrogates=2),
    "high": FawkesV1Config(th=0.015, steps=100, lr=15.0, n_surrogates=2),
}


def _to_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((x / 255.0 - 0.5) * _TANH_SCALE)


def _from_tanh(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) / _TANH_SCALE + 0.5) * 255.0


class FawkesV1:
    """Fawkes v1.0 cloak: untargeted feature-space push under a DSSIM budget.

    Source: Shan et al., "Fawkes: Protecting Privacy against Unauthorized Deep Learning Models", USENIX Security
    2020; algorithm and parameters of the fawkes 1.0.x releases (github.com/Shawn-Shan/fawkes), re-implemented.
    Objective: minimise ``c * max(DSSIM - th, 0)^2 - w * sum_k ||f_k(x') - f_k(x)||^2 / ||f_k(x)||`` over a
    variable in tanh space with Adadelta. As in the 1.0.x source, the per-image weight ``w`` doubles while DSSIM
    <= 0.9 th and halves while DSSIM >= 1.1 th, within [1/128, 256]; it resets to 1 inside the band, when it
    would leave the bounds, and when DSSIM crosses the band; step 1 is followed by a -0.01 x sign(gradient) kick
    that restarts Adadelta. Each image keeps the iterate with the largest feature term among those with DSSIM
    <= 1.1 th (the clean image if none qualifies). Departures from the source: clean embeddings are computed once
    per batch (so is DSSIM's clean side: ``SSIMReference``), the last iterate is evaluated too, and the source's
    "save last on failed" fallback, which can exceed the budget, is left out.
    Distance: DSSIM = (1 - SSIM) / 2 on the aligned crop (budget ``th``); pixel change clipped to +-15 (0..255).
    Arguments: ``surrogates``: differentiable extractors sharing one alignment template (the first
    ``config.n_surrogates`` are used; fewer than asked is allowed and recorded in ``params()``); ``mode``: low,
    mid or high; ``config``: a ``FawkesV1Config`` replacing the mode's preset; ``device``: torch device (CUDA
    when available by default).
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed)`` -> ``CloakOutput(faces float32 (N, S, S, 3) in 0..255,
    dssim (N,), seconds)``; S is the template's size.
    Example: ``FawkesV1([DlibResNetTorch()], mode="low").cloak(faces, seed=0)``.
    """

    def __init__(
        self,
        surrogates: Sequence[DifferentiableExtractor],
        mode: str = "mid",
        config: FawkesV1Config | None = None,
        device: str | None = None,
    ) -> None:
        if mode not in FAWKES_V1_MODES:
            raise ValueError(f"unknown Fawkes v1.0 mode {mode!r}; modes: {', '.join(FAWKES_V1_MODES)}")
        if not surrogates:
            raise ValueError("FawkesV1 needs at least one surrogate extractor")
        templates = {s.info.template for s in surrogates}
        if len(templates) != 1:
            named = ", ".join(f"{s.info.name} ({s.info.template})" for s in surrogates)
            raise ValueError(f"FawkesV1 surrogates must share one alignment template, got: {named}")
        not_diff = [s.info.name for s in surrogates if not s.info.differentiable]
        if not_diff:
            raise ValueError(f"FawkesV1 surrogates must be differentiable; not: {', '.join(not_diff)}")
        self.mode = mode
        self.config = config if config is not None else FAWKES_V1_MODES[mode]
        self.name = f"fawkes-v1.0:{mode}"
        self.template = templates.pop()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.surrogates = list(surrogates[: self.config.n_surrogates])
        # Private channels-last copies: convolutions then find input and weights in one layout (no reordering per
        # call), and the extractors' own modules, which embed faces elsewhere, stay exactly as they were.
        self._nets = [
            # Module.to accepts memory_format at run time; torch's type stubs leave it out.
            copy.deepcopy(s.torch_module()).to(self.device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
            for s in self.surrogates
        ]
        self._sizes = [s.info.input_size for s in self.surrogates]

    def params(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "mode": self.mode,
            "preset": self.config == FAWKES_V1_MODES[self.mode],
            "surrogates": [s.info.name for s in self.surrogates],
            "surrogates_missing": self.config.n_surrogates - len(self.surrogates),
            "template": self.template,
        }

    def cloak(self, faces: np.ndarray, seed: int) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8:
            raise ValueError(f"FawkesV1.cloak expects uint8 faces, got {faces.dtype}")
        x_all = _faces_to_tensor(faces)
        gen = torch.Generator().manual_seed(seed)
        out_faces, out_dssim = [], []
        for i in range(0, len(x_all), self.config.batch_size):
            x = x_all[i : i + self.config.batch_size]
            noise = (torch.rand(x.shape, generator=gen) * 2.0 - 1.0) * self.config.init_noise
            n = len(x)
            if n == 1 and self.device.type == "cpu" and torch.get_num_threads() > 1:
                # oneDNN's convolution backward splits a one-image batch across threads and was seen to sum the
                # parts in varying order; with the image twice, threads take whole images. The copy is dropped.
                x, noise = x.repeat(2, 1, 1, 1), noise.repeat(2, 1, 1, 1)
            # Channels-last: oneDNN's and cuDNN's faster convolution layout, for the surrogates and the SSIM window.
            x, noise = (t.to(self.device, memory_format=torch.channels_last) for t in (x, noise))
            with step_loop_runtime(self.device):
                best, best_dssim = self._cloak_batch(x, noise)
            out_faces.append(best[:n].permute(0, 2, 3, 1).cpu())
            out_dssim.append(best_dssim[:n].cpu())
        size = faces.shape[1]
        return CloakOutput(
            faces=torch.cat(out_faces).numpy() if out_faces else np.zeros((0, size, size, 3), np.float32),
            dssim=torch.cat(out_dssim).numpy() if out_dssim else np.zeros(0, np.float32),
            seconds=time.perf_counter() - start,
        )

    def feature_distance(self, clean: np.ndarray, cloaked: np.ndarray) -> np.ndarray:
        """``||f(x') - f(x)|| / ||f(x)||`` per image and surrogate: float32 (N, len(surrogates)).

        ``clean`` and ``cloaked``: (N, S, S, 3) RGB in 0..255, uint8 or float.
        """
        if clean.shape != cloaked.shape:
            raise ValueError(f"clean and cloaked differ in shape: {clean.shape} vs {cloaked.shape}")
        x_all, y_all = _faces_to_tensor(clean), _faces_to_tensor(cloaked)
        rows = []
        with torch.inference_mode():
            for i in range(0, len(x_all), self.config.batch_size):
                x = x_all[i : i + self.config.batch_size].to(self.device)
                y = y_all[i : i + self.config.batch_size].to(self.device)
                pairs = zip(self._embed(x), self._embed(y), strict=True)
                cols = [(fy - fx).norm(dim=1) / fx.norm(dim=1) for fx, fy in pairs]
                rows.append(torch.stack(cols, dim=1).cpu())
        return torch.cat(rows).numpy() if rows else np.zeros((0, len(self._nets)), np.float32)

    def _embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        with mixed_precision(self.device, self.config.amp):
            return [
                net(
                    x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                ).float()
                for net, size in zip(self._nets, self._sizes, strict=True)
            ]

    def _optimizer(self, modifier: torch.Tensor) -> torch.optim.Adadelta:
        cfg = self.config
        return torch.optim.Adadelta([modifier], lr=cfg.lr, rho=cfg.adadelta_rho, eps=cfg.adadelta_eps)

    def _next_weight(
        self, weight: torch.Tensor, side: torch.Tensor, d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fawkes 1.0's per-image weight schedule, vectorised; ``side`` remembers which side of the band we were."""
        cfg = self.config
        up = (d <= cfg.weight_up_below * cfg.th) & (weight * 2.0 <= cfg.weight_max)
        down = ~up & (d >= cfg.weight_down_above * cfg.th) & (weight / 2.0 >= cfg.weight_min)
        reset = torch.full_like(weight, cfg.weight_init)
        weight = torch.where(
            up,
            torch.where(side == -1, reset, weight * 2.0),
            torch.where(down, torch.where(side == 1, reset, weight / 2.0), reset),
        )
        return weight, up.float() - down.float()

    def _cloak_batch(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimise one batch (B, 3, S, S) in 0..255 on ``self.device``; returns (best images, their DSSIM)."""
        cfg = self.config
        with torch.no_grad():
            clean = self._embed(x)
            clean_norms = [f.norm(dim=1) for f in clean]
        x_tanh = _to_tanh(x)
        budget = SSIMReference(x)  # the clean side of DSSIM is the same at every step: its statistics once
        modifier = noise.clone().requires_grad_(True)
        optimizer = self._optimizer(modifier)
        batch = x.shape[0]
        weight = torch.full((batch,), cfg.weight_init, device=x.device)
        side = torch.ones(batch, device=x.device)  # +1 below the band, -1 above, 0 inside: Fawkes starts at +1
        best = x.clone()
        best_feature = torch.zeros(batch, device=x.device)
        best_dssim = torch.zeros(batch, device=x.device)
        keep_limit = cfg.weight_down_above * cfg.th
        for step in range(cfg.steps + 1):
            last = step == cfg.steps  # the final iterate is only evaluated, not stepped from
            with torch.set_grad_enabled(not last):
                cloaked = x + (_from_tanh(x_tanh + modifier) - x).clamp(-cfg.max_change, cfg.max_change)
                d = budget.dssim(cloaked)
                triples = zip(self._embed(cloaked), clean, clean_norms, strict=True)
                feature = torch.stack([(f - f0).pow(2).sum(dim=1) / n0 for f, f0, n0 in triples]).sum(dim=0)
            with torch.no_grad():
                better = (d <= keep_limit) & (feature > best_feature)
                best = torch.where(better[:, None, None, None], cloaked, best)
                best_feature = torch.where(better, feature, best_feature)
                best_dssim = torch.where(better, d, best_dssim)
            if last:
                break
            loss = (cfg.c * (d - cfg.th).clamp(min=0.0).pow(2) - weight * feature).sum()
            # Only the modifier's gradient: the surrogates' weight gradients are never computed.
            (grad,) = torch.autograd.grad(loss, [modifier])
            modifier.grad = grad
            optimizer.step()
            with torch.no_grad():
                if step == 0 and cfg.first_kick > 0.0:
                    modifier -= cfg.first_kick * grad.sign()
                    optimizer = self._optimizer(modifier)  # Fawkes re-creates its variable here: fresh Adadelta
                weight, side = self._next_weight(weight, side, d)
        return best.detach(), best_dssim


def _faces_to_tensor(faces: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) RGB in 0..255 -> float32 (N, 3, S, S) on the CPU."""
    if faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"expected aligned faces (N, S, S, 3), got shape {faces.shape}")
    return torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


class FawkesV1Early(FawkesV1):
    """Fawkes v1.0 as the earlier 1.0.x releases shipped it: the same algorithm, earlier mode presets.

    Source: as ``FawkesV1``; the presets of the earlier fawkes 1.0.x releases (``FAWKES_V1_EARLY_MODES``: low
    0.005 / 25 steps, mid 0.01 / 50, high 0.015 / 100; learning rates and extractor counts as the current modes).
    Distance: DSSIM = (1 - SSIM) / 2 on the aligned crop (budget ``th``); pixel change clipped to +-15 (0..255).
    Arguments: as ``FawkesV1``; ``mode`` picks from ``FAWKES_V1_EARLY_MODES``.
    Shape: as ``FawkesV1``.
    Example: ``FawkesV1Early([DlibResNetTorch()], mode="low").cloak(faces, seed=0)``.
    """

    def __init__(
        self,
        surrogates: Sequence[DifferentiableExtractor],
        mode: str = "mid",
        config: FawkesV1Config | None = None,
        device: str | None = None,
    ) -> None:
        if mode not in FAWKES_V1_EARLY_MODES:
            raise ValueError(f"unknown Fawkes v1.0-early mode {mode!r}; modes: {', '.join(FAWKES_V1_EARLY_MODES)}")
        super().__init__(surrogates, mode, config if config is not None else FAWKES_V1_EARLY_MODES[mode], device)
        self.name = f"fawkes-v1.0-early:{mode}"

    def params(self) -> dict[str, object]:
        return {**super().params(), "preset": self.config == FAWKES_V1_EARLY_MODES[self.mode]}
