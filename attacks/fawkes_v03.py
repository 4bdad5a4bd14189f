"""Fawkes v0.3 cloak: a targeted push towards another identity's features under a DSSIM budget."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import fawkes_eval
from attacks.fawkes_v1 import _from_tanh, _to_tanh
from attacks.surrogates import (
    SurrogateSet,
    as_output_faces,
    faces_to_tensor,
    mixed_precision,
    one_image_guard,
    resolve_device,
    step_loop_runtime,
)
from fawkes_eval.align import FaceAligner, NoFaceError, default_cache_dir, load_photo
from fawkes_eval.data import load_dataset
from fawkes_eval.perceptual import SSIMReference
from fawkes_eval.types import CloakOutput, DifferentiableExtractor

# The pool root "bundled:<name>" names data shipped with fawkes-eval, as campaign files do.
_BUNDLED_PREFIX = "bundled:"
BUNDLED_POOL = "bundled:lfw_sample"


@dataclass(frozen=True)
class FawkesV03Config:
    """Every parameter of a Fawkes v0.3 run; the presets in ``FAWKES_V03_MODES`` are the v0.3 release values."""

    th: float  # DSSIM budget
    steps: int
    lr: float  # Adadelta learning rate at the start
    c: float = 1e6  # weight of the DSSIM penalty c * max(DSSIM - th, 0)^2
    lr_decay: float = 0.8  # the learning rate is multiplied by this ...
    lr_decay_periods: int = 3  # ... every steps // lr_decay_periods steps
    target_push: float = 2.0  # t = f(x) + target_push * (mean f(target) - mean f(user))
    n_furthest: int = 20  # the target is drawn (seeded) among this many furthest candidate identities
    pool_root: str = BUNDLED_POOL  # candidate identities: ROOT/<identity>/<image>, or bundled:<name>
    pool_subset: str = ""  # optional subset file of the pool, paths relative to pool_root
    keep_tolerance: float = 1.1  # an iterate may be kept while DSSIM <= this x th
    init_noise: float = 1e-4  # starting modifier: uniform(-1, 1) x this, in tanh space
    adadelta_rho: float = 0.95
    adadelta_eps: float = 1e-7
    batch_size: int = 32
    amp: bool = False  # bfloat16 autocast of the surrogates' forward pass on CUDA (ignored on the CPU)

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("th", 0.0 < self.th < 1.0, "in (0, 1)"),
            ("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer >= 1"),
            ("lr", self.lr > 0.0, "> 0"),
            ("c", self.c >= 0.0, ">= 0"),
            ("lr_decay", 0.0 < self.lr_decay <= 1.0, "in (0, 1]"),
            ("lr_decay_periods", isinstance(self.lr_decay_periods, int) and self.lr_decay_periods >= 1,
             "an integer >= 1"),
            ("target_push", self.target_push > 0.0, "> 0"),
            ("n_furthest", isinstance(self.n_furthest, int) and self.n_furthest >= 1, "an integer >= 1"),
            ("pool_root", bool(self.pool_root), "a directory or bundled:<name>"),
            ("keep_tolerance", self.keep_tolerance >= 1.0, ">= 1"),
            ("init_noise", self.init_noise >= 0.0, ">= 0"),
            ("adadelta_rho", 0.0 <= self.adadelta_rho < 1.0, "in [0, 1)"),
            ("adadelta_eps", self.adadelta_eps > 0.0, "> 0"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
        ]  # fmt: skip
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"FawkesV03Config.{name} must be {rule}, got {getattr(self, name)!r}")


FAWKES_V03_MODES: dict[str, FawkesV03Config] = {
    "min": FawkesV03Config(th=0.002, steps=20, lr=40.0),
    "low": FawkesV03Config(th=0.003, steps=50, lr=35.0),
    "mid": FawkesV03Config(th=0.005, steps=200, lr=20.0),
    "high": FawkesV03Config(th=0.008, steps=500, lr=10.0),
    "ultra": FawkesV03Config(th=0.01, steps=1000, lr=8.0),
}


@dataclass(frozen=True)
class TargetPool:
    """Aligned faces of candidate target identities: ``faces`` uint8 (M, S, S, 3) at ``template``, one identity
    per face in ``identities``; ``source`` says where they came from (root, subset, manifest sha256)."""

    faces: np.ndarray
    identities: tuple[str, ...]
    template: str
    source: str

    def __post_init__(self) -> None:
        if self.faces.ndim != 4 or self.faces.dtype != np.uint8 or len(self.faces) != len(self.identities):
            raise ValueError(f"target pool {self.source}: expected uint8 faces (M, S, S, 3) with one identity each, "
                             f"got {self.faces.dtype} {self.faces.shape} and {len(self.identities)} identities")
        if len(set(self.identities)) < 2:
            raise ValueError(f"target pool {self.source}: needs at least two identities")

    @classmethod
    def from_dataset(cls, root: str, subset: str, template: str, aligner: FaceAligner | None = None) -> TargetPool:
        """Align every photo of an identity-folder dataset at ``template``; photos without a face are left out."""
        path = (Path(fawkes_eval.__file__).resolve().parent / "demo_data" / root.removeprefix(_BUNDLED_PREFIX)
                if root.startswith(_BUNDLED_PREFIX) else Path(root))  # fmt: skip
        dataset = load_dataset(path, subset or None)
        aligner = aligner or FaceAligner(cache_dir=default_cache_dir())
        faces, identities = [], []
        for record in dataset.records:
            try:
                faces.append(aligner.align(load_photo(record.path), template, str(record.path)).crop)
            except NoFaceError:
                continue
            identities.append(record.identity)
        if not faces:
            raise ValueError(f"target pool {path}: no face found in any photo")
        source = f"{root}{'@' + subset if subset else ''} (manifest sha256 {dataset.manifest_hash()[:16]})"
        return cls(np.stack(faces), tuple(identities), template, source)


@dataclass(frozen=True)
class TargetChoice:
    """The target chosen for one user's images, as the runner logs it."""

    user: str  # the user's label, or "<batch>" when the call had none
    target: str
    candidates: tuple[str, ...]  # the furthest identities the seeded choice was made among, furthest first


def rank_candidates(
    user: Sequence[torch.Tensor], pool: Sequence[torch.Tensor], identities: Sequence[str], excluded: set[str]
) -> list[str]:
    """Candidate identities, furthest first, by the minimum distance between any of their faces and any of the
    user's, summed over surrogates after dividing by the user's mean embedding norm (so surrogates weigh alike).

    ``user[k]``: (U, D_k) and ``pool[k]``: (M, D_k) embeddings by surrogate k; ``identities``: (M,) labels.
    """
    labels = np.asarray(identities)
    names = sorted(set(identities) - excluded)
    if not names:
        raise ValueError("no candidate target identity is left once the user's own are excluded")
    score = np.zeros(len(names))
    for u, p in zip(user, pool, strict=True):
        dist = (torch.cdist(p.double(), u.double()).amin(dim=1) / u.norm(dim=1).mean()).cpu().numpy()  # (M,)
        score += [dist[labels == name].min() for name in names]
    order = np.argsort(-score, kind="stable")
    return [names[i] for i in order]


def choose_targets(
    faces: np.ndarray,
    clean: Sequence[torch.Tensor],
    pool: TargetPool,
    pool_embeddings: Sequence[torch.Tensor],
    users: Sequence[str] | None,
    seed: int,
    n_furthest: int,
) -> list[tuple[TargetChoice, list[int]]]:
    """One target per user (the whole batch is one user when ``users`` is None), with the rows it applies to.

    The user's own identity is never a candidate: labels in ``users`` are excluded, and so is any pool identity
    holding a face crop byte-identical to one of the user's. The draw among the ``n_furthest`` is seeded by
    (``seed``, the user's position in the call).
    """
    pool_digests = [hashlib.sha256(f.tobytes()).hexdigest() for f in pool.faces]
    labels = list(users) if users is not None else ["<batch>"] * len(faces)
    choices = []
    for group_index, user in enumerate(dict.fromkeys(labels)):
        rows = [i for i, label in enumerate(labels) if label == user]
        digests = {hashlib.sha256(faces[i].tobytes()).hexdigest() for i in rows}
        excluded = {pool.identities[j] for j, d in enumerate(pool_digests) if d in digests}
        if users is not None:
            excluded.add(user)
        ranked = rank_candidates([c[rows] for c in clean], pool_embeddings, pool.identities, excluded)
        candidates = ranked[:n_furthest]
        target = candidates[int(np.random.default_rng([seed, group_index]).integers(len(candidates)))]
        choices.append((TargetChoice(user, target, tuple(candidates)), rows))
    return choices


class FawkesV03:
    """Fawkes v0.3 cloak: targeted feature-space push towards a far identity under a DSSIM budget.

    Source: Shan et al., "Fawkes: Protecting Privacy against Unauthorized Deep Learning Models", USENIX Security
    2020; algorithm and parameters of the fawkes v0.3 release (github.com/Shawn-Shan/fawkes), re-implemented.
    Target: among the pool's identities (never the user's own: those named in ``users`` and any that share a face
    crop byte for byte with the input), rank by the minimum embedding distance to the user's images and draw one
    (seeded) among the ``n_furthest`` furthest. Per image, ``t = f(x) + 2 (mean f(target) - mean f(user))``.
    Objective: minimise ``sum_k ||f_k(x') - t_k|| / ||t_k|| + c * max(DSSIM - th, 0)^2`` over a variable in tanh
    space with Adadelta, the learning rate x0.8 every steps/3; each image keeps the iterate with the smallest
    target distance among those with DSSIM <= 1.1 th (the clean image if none qualifies). No pixel clip (v0.3
    had none). Departure: v0.3 worked on 224 px crops of its own extractor; here the crop is the surrogates'
    template (224 px for the ArcFace-224 surrogates).
    Distance: DSSIM = (1 - SSIM) / 2 on the aligned crop (budget ``th``).
    Arguments: ``surrogates``: differentiable extractors of one alignment geometry; ``mode``: min, low, mid, high
    or ultra; ``config``: a ``FawkesV03Config`` replacing the mode's preset; ``pool``: a ``TargetPool`` replacing
    ``config.pool_root`` (loaded and aligned at first use otherwise); ``device``: torch device (CUDA when
    available by default).
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed, users=None)`` -> ``CloakOutput(faces float32 (N, S, S, 3)
    in 0..255, dssim (N,), seconds)``; ``users``: a label per image (targets are then chosen per user), else the
    whole call is one user. The choices are in ``last_targets`` after each call.
    Example: ``FawkesV03([DlibResNetTorch()], mode="low").cloak(faces, seed=0)``.
    """

    def __init__(
        self,
        surrogates: Sequence[DifferentiableExtractor],
        mode: str = "mid",
        config: FawkesV03Config | None = None,
        pool: TargetPool | None = None,
        device: str | None = None,
    ) -> None:
        if mode not in FAWKES_V03_MODES:
            raise ValueError(f"unknown Fawkes v0.3 mode {mode!r}; modes: {', '.join(FAWKES_V03_MODES)}")
        self.mode = mode
        self.config = config if config is not None else FAWKES_V03_MODES[mode]
        self.name = f"fawkes-v0.3:{mode}"
        self.device = resolve_device(device)
        self.surrogates = SurrogateSet(surrogates, self.device, "FawkesV03")
        self.template = self.surrogates.template
        if pool is not None and pool.template != self.template:
            raise ValueError(f"target pool {pool.source} is aligned at {pool.template}, the surrogates at {self.template}")
        self._pool = pool
        self._pool_embeddings: list[torch.Tensor] | None = None
        self.last_targets: list[TargetChoice] = []

    def params(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "mode": self.mode,
            "preset": self.config == FAWKES_V03_MODES[self.mode],
            "surrogates": self.surrogates.names,
            "template": self.template,
            "pool": self._pool.source if self._pool is not None else None,
        }

    def cloak(self, faces: np.ndarray, seed: int, users: Sequence[str] | None = None) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8:
            raise ValueError(f"FawkesV03.cloak expects uint8 faces, got {faces.dtype}")
        x_all = faces_to_tensor(faces, self.surrogates.size)
        if users is not None and len(users) != len(faces):
            raise ValueError(f"FawkesV03.cloak: {len(users)} user labels for {len(faces)} faces")
        targets = self._targets(faces, x_all, seed, users)
        gen = torch.Generator().manual_seed(seed)
        cfg = self.config
        out_faces, out_dssim = [], []
        for i in range(0, len(x_all), cfg.batch_size):
            x = x_all[i : i + cfg.batch_size]
            noise = (torch.rand(x.shape, generator=gen) * 2.0 - 1.0) * cfg.init_noise
            t = [tk[i : i + cfg.batch_size] for tk in targets]
            n = len(x)
            x, noise = one_image_guard(x, self.device), one_image_guard(noise, self.device)
            t = [one_image_guard(tk, self.device) for tk in t]
            # channels-last: the surrogates' copies are in that layout (attacks/surrogates.py), so are the SSIM maps
            x, noise = (v.to(self.device, memory_format=torch.channels_last) for v in (x, noise))
            with step_loop_runtime(self.device):
                best, best_dssim = self._cloak_batch(x, noise, [tk.to(self.device) for tk in t])
            out_faces.append(best[:n])
            out_dssim.append(best_dssim[:n].cpu())
        return CloakOutput(
            faces=as_output_faces(out_faces, self.surrogates.size),
            dssim=torch.cat(out_dssim).numpy() if out_dssim else np.zeros(0, np.float32),
            seconds=time.perf_counter() - start,
        )

    def pool(self) -> TargetPool:
        """The candidate pool, loaded and aligned on first use when none was given."""
        if self._pool is None:
            self._pool = TargetPool.from_dataset(self.config.pool_root, self.config.pool_subset, self.template)
        return self._pool

    def _targets(self, faces: np.ndarray, x_all: torch.Tensor, seed: int, users: Sequence[str] | None) -> list[torch.Tensor]:
        """Choose a target per user and return the per-image target vectors, one (N, D_k) tensor per surrogate."""
        self.last_targets = []
        if len(faces) == 0:
            return [torch.zeros(0) for _ in range(len(self.surrogates))]
        pool = self.pool()
        if self._pool_embeddings is None:
            pool_x = faces_to_tensor(pool.faces, self.surrogates.size)
            self._pool_embeddings = self.surrogates.embed_all(pool_x, self.config.batch_size)
        clean = self.surrogates.embed_all(x_all, self.config.batch_size)
        targets = [c.clone() for c in clean]
        for choice, rows in choose_targets(faces, clean, pool, self._pool_embeddings, users, seed, self.config.n_furthest):
            self.last_targets.append(choice)
            members = [j for j, name in enumerate(pool.identities) if name == choice.target]
            for k, (c, p) in enumerate(zip(clean, self._pool_embeddings, strict=True)):
                shift = self.config.target_push * (p[members].mean(dim=0) - c[rows].mean(dim=0))
                targets[k][rows] = c[rows] + shift
        return [t.cpu() for t in targets]

    def _cloak_batch(
        self, x: torch.Tensor, noise: torch.Tensor, targets: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimise one batch (B, 3, S, S) in 0..255 towards ``targets``; returns (best images, their DSSIM)."""
        cfg = self.config
        x_tanh = _to_tanh(x)
        budget = SSIMReference(x)  # the clean side of DSSIM is the same at every step: its statistics once
        modifier = noise.clone().requires_grad_(True)
        optimizer = torch.optim.Adadelta([modifier], lr=cfg.lr, rho=cfg.adadelta_rho, eps=cfg.adadelta_eps)
        period = max(1, cfg.steps // cfg.lr_decay_periods)
        target_norms = [t.norm(dim=1) for t in targets]
        batch = x.shape[0]
        best = x.clone()
        best_distance = torch.full((batch,), float("inf"), device=x.device)
        best_dssim = torch.zeros(batch, device=x.device)
        for step in range(cfg.steps + 1):
            last = step == cfg.steps  # the final iterate is only evaluated, not stepped from
            with torch.set_grad_enabled(not last):
                cloaked = _from_tanh(x_tanh + modifier)
                d = budget.dssim(cloaked)
                with mixed_precision(self.device, cfg.amp):
                    features = self.surrogates.embed(cloaked)
                triples = zip(features, targets, target_norms, strict=True)
                distance = torch.stack([(f.float() - t).norm(dim=1) / n for f, t, n in triples]).sum(dim=0)
            with torch.no_grad():
                better = (d <= cfg.keep_tolerance * cfg.th) & (distance < best_distance)
                best = torch.where(better[:, None, None, None], cloaked, best)
                best_distance = torch.where(better, distance, best_distance)
                best_dssim = torch.where(better, d, best_dssim)
            if last:
                break
            loss = (distance + cfg.c * (d - cfg.th).clamp(min=0.0).pow(2)).sum()
            (modifier.grad,) = torch.autograd.grad(loss, [modifier])
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * cfg.lr_decay ** (step // period)
            optimizer.step()
        return best.detach(), best_dssim
