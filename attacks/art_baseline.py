"""Baseline: ART's ``FeatureAdversariesPyTorch`` driven through ART's own API on the same surrogate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from attacks.fawkes_v03 import BUNDLED_POOL, TargetChoice, TargetPool, choose_targets
from attacks.surrogates import SurrogateSet, faces_to_tensor, resolve_device
from fawkes_eval.perceptual import dssim
from fawkes_eval.types import CloakOutput, DifferentiableExtractor


@dataclass(frozen=True)
class ArtFeatureAdversariesConfig:
    """Every parameter of the ART baseline: ART's attack parameters plus the guide (target) selection."""

    delta: float = 15.0  # L-inf budget, 0..255 units: Fawkes v1.0's per-pixel limit, so both share one ceiling
    step_size: float = 1.0  # ART's PGD step, 0..255 units
    max_iter: int = 75  # Fawkes v1.0 mid's step count: a speed peer step for step
    n_furthest: int = 20  # guides: faces of an identity drawn among the furthest, as Fawkes v0.3 picks targets
    pool_root: str = BUNDLED_POOL
    pool_subset: str = ""
    batch_size: int = 32

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("delta", 0.0 < self.delta <= 255.0, "in (0, 255] (0..255 units)"),
            ("step_size", self.step_size > 0.0, "> 0"),
            ("max_iter", isinstance(self.max_iter, int) and self.max_iter >= 1, "an integer >= 1"),
            ("n_furthest", isinstance(self.n_furthest, int) and self.n_furthest >= 1, "an integer >= 1"),
            ("pool_root", bool(self.pool_root), "a directory or bundled:<name>"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"ArtFeatureAdversariesConfig.{name} must be {rule}, got {getattr(self, name)!r}")


class ArtFeatureAdversaries:
    """ART's Feature Adversaries attack on one surrogate: a baseline and speed peer for our generators.

    Source: Sabour et al., "Adversarial Manipulation of Deep Representations", ICLR 2016, as implemented by the
    Adversarial Robustness Toolbox (``art.attacks.evasion.FeatureAdversariesPyTorch``), called through ART's API
    on a ``PyTorchClassifier`` whose output is the surrogate's embedding.
    Objective (ART's): minimise ``||f(x') - f(g)||^2`` by PGD with signed steps, within the L-inf ball ``delta``
    and 0..255, where each guide ``g`` is a face of a target identity chosen as Fawkes v0.3 chooses one (furthest
    candidates of the pool, seeded draw among ``n_furthest``; never the user's own identity). No SSIM budget: the
    DSSIM of ART's output is measured on each crop and returned, so the two can be compared on distortion.
    Distance: L-inf <= ``delta`` (0..255 units); DSSIM measured, not budgeted.
    Arguments: ``surrogates``: the first is used (ART attacks one estimator); ``config``: an
    ``ArtFeatureAdversariesConfig``; ``pool``: a ``TargetPool`` replacing ``config.pool_root``; ``device``.
    Shape: ``cloak(faces uint8 (N, S, S, 3) RGB, seed, users=None)`` -> ``CloakOutput(faces float32 (N, S, S, 3)
    in 0..255, dssim (N,), seconds)``; the chosen targets are in ``last_targets``.
    Example: ``ArtFeatureAdversaries([DlibResNetTorch()]).cloak(faces, seed=0)``.
    """

    def __init__(
        self,
        surrogates: Sequence[DifferentiableExtractor],
        config: ArtFeatureAdversariesConfig | None = None,
        pool: TargetPool | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config if config is not None else ArtFeatureAdversariesConfig()
        self.name = "art-feature-adversaries"
        self.device = resolve_device(device)
        self.surrogates = SurrogateSet(list(surrogates)[:1], self.device, "ArtFeatureAdversaries")
        self.template = self.surrogates.template
        if pool is not None and pool.template != self.template:
            raise ValueError(f"target pool {pool.source} is aligned at {pool.template}, the surrogate at {self.template}")
        self._pool = pool
        self._pool_embeddings: list[torch.Tensor] | None = None
        self._attack: Any = None
        self.last_targets: list[TargetChoice] = []

    def params(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "surrogates": self.surrogates.names,
            "template": self.template,
            "pool": self._pool.source if self._pool is not None else None,
        }

    def pool(self) -> TargetPool:
        if self._pool is None:
            self._pool = TargetPool.from_dataset(self.config.pool_root, self.config.pool_subset, self.template)
        return self._pool

    def _art_attack(self) -> Any:
        """ART's estimator and attack, built on first use (ART is a heavy import)."""
        if self._attack is None:
            from art.attacks.evasion import FeatureAdversariesPyTorch
            from art.estimators.classification import PyTorchClassifier

            extractor = self.surrogates.extractors[0]
            size = self.surrogates.size
            estimator = PyTorchClassifier(
                model=extractor.torch_module(),
                loss=torch.nn.MSELoss(),  # required by the estimator; the attack uses activations only
                input_shape=(3, size, size),
                nb_classes=extractor.info.embedding_dim,
                clip_values=(0.0, 255.0),
                device_type="gpu" if self.device.type == "cuda" else "cpu",
            )
            cfg = self.config
            self._attack = FeatureAdversariesPyTorch(
                estimator, delta=cfg.delta, layer=-1, max_iter=cfg.max_iter, batch_size=cfg.batch_size,
                step_size=cfg.step_size, random_start=False, verbose=False,
            )  # fmt: skip
        return self._attack

    def cloak(self, faces: np.ndarray, seed: int, users: Sequence[str] | None = None) -> CloakOutput:
        start = time.perf_counter()
        if faces.dtype != np.uint8:
            raise ValueError(f"ArtFeatureAdversaries.cloak expects uint8 faces, got {faces.dtype}")
        if users is not None and len(users) != len(faces):
            raise ValueError(f"ArtFeatureAdversaries.cloak: {len(users)} user labels for {len(faces)} faces")
        x_all = faces_to_tensor(faces, self.surrogates.size)
        self.last_targets = []
        if len(faces) == 0:
            size = self.surrogates.size
            return CloakOutput(np.zeros((0, size, size, 3), np.float32), np.zeros(0, np.float32), 0.0)
        pool = self.pool()
        if self._pool_embeddings is None:
            pool_x = faces_to_tensor(pool.faces, self.surrogates.size)
            self._pool_embeddings = self.surrogates.embed_all(pool_x, self.config.batch_size)
        clean = self.surrogates.embed_all(x_all, self.config.batch_size)
        guides = np.empty_like(faces)
        for choice, rows in choose_targets(faces, clean, pool, self._pool_embeddings, users, seed, self.config.n_furthest):
            self.last_targets.append(choice)
            members = [j for j, name in enumerate(pool.identities) if name == choice.target]
            for position, row in enumerate(rows):  # the target's faces in turn, one guide per image
                guides[row] = pool.faces[members[position % len(members)]]
        x = x_all.numpy()
        adversarial = self._art_attack().generate(x, y=faces_to_tensor(guides, self.surrogates.size).numpy())
        out = torch.from_numpy(adversarial.astype(np.float32))
        return CloakOutput(
            faces=out.permute(0, 2, 3, 1).contiguous().numpy(),
            dssim=dssim(out, x_all).numpy(),
            seconds=time.perf_counter() - start,
        )
