"""Cloak generators on real faces through a real surrogate: budgets, limits, determinism, and the noise control."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

from attacks.fawkes_v1 import FAWKES_V1_MODES, FawkesV1, FawkesV1Config
from attacks.noise import NoiseCloak, NoiseConfig
from fawkes_eval.data import Dataset
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.registry import CLOAKS
from fawkes_eval.types import CloakOutput, ExtractorInfo
from recognizers.dlib_resnet_torch import DlibResNetTorch

# Pixel-change slack for float32 round trips through tanh space.
PIXEL_TOL = 1e-3


@pytest.fixture(scope="module")
def surrogate() -> DlibResNetTorch:
    return DlibResNetTorch()


@pytest.fixture(scope="module")
def faces(demo_dataset: Dataset, aligned: Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Three dlib-150 chips of three different people."""
    chips, labels = aligned(demo_dataset, "dlib-150")
    picks = [int(np.flatnonzero(labels == person)[0]) for person in np.unique(labels)[:3]]
    return chips[picks]


@pytest.fixture(scope="module")
def low_fawkes(surrogate: DlibResNetTorch) -> FawkesV1:
    return FawkesV1([surrogate], mode="low")


@pytest.fixture(scope="module")
def low_runs(low_fawkes: FawkesV1, faces: np.ndarray) -> tuple[CloakOutput, CloakOutput]:
    """Fawkes v1.0 low with its real parameters, and the noise control at the same budget."""
    return low_fawkes.cloak(faces, seed=0), NoiseCloak(mode="low").cloak(faces, seed=0)


def _short(mode: str, steps: int = 4) -> FawkesV1Config:
    return dataclasses.replace(FAWKES_V1_MODES[mode], steps=steps)


def test_low_mode_within_budget_and_truthful(low_runs: tuple[CloakOutput, CloakOutput], faces: np.ndarray) -> None:
    out, _ = low_runs
    th = FAWKES_V1_MODES["low"].th
    assert out.faces.dtype == np.float32 and out.faces.shape == faces.shape
    assert out.dssim.shape == (len(faces),)
    assert np.all(out.dssim <= 1.1 * th)
    assert np.all(out.dssim > 0.5 * th), "the cloak should use most of its budget"
    measured = [image_metrics(clean, cloaked)["dssim"] for clean, cloaked in zip(faces, out.faces, strict=True)]
    np.testing.assert_allclose(out.dssim, measured, rtol=1e-3, atol=1e-6)
    assert out.seconds > 0


def test_low_mode_pixel_change_within_limit(low_runs: tuple[CloakOutput, CloakOutput], faces: np.ndarray) -> None:
    out, _ = low_runs
    change = out.faces - faces.astype(np.float32)
    assert np.abs(change).max() <= 15.0 + PIXEL_TOL
    assert out.faces.min() >= 0.0 and out.faces.max() <= 255.0


def test_cloak_moves_features_more_than_noise_at_same_budget(
    low_runs: tuple[CloakOutput, CloakOutput], low_fawkes: FawkesV1, faces: np.ndarray
) -> None:
    cloaked, noise = low_runs
    np.testing.assert_allclose(noise.dssim, FAWKES_V1_MODES["low"].th, rtol=0.01)
    fawkes_dist = low_fawkes.feature_distance(faces, cloaked.faces)
    noise_dist = low_fawkes.feature_distance(faces, noise.faces)
    assert fawkes_dist.shape == (len(faces), 1)
    assert np.all(fawkes_dist > 3.0 * noise_dist), (fawkes_dist, noise_dist)


@pytest.mark.parametrize("mode", ["mid", "high"])
def test_other_modes_stay_within_budget(surrogate: DlibResNetTorch, faces: np.ndarray, mode: str) -> None:
    gen = FawkesV1([surrogate], mode=mode, config=_short(mode, steps=8))
    out = gen.cloak(faces, seed=1)
    assert np.all(out.dssim <= 1.1 * FAWKES_V1_MODES[mode].th)
    assert np.abs(out.faces - faces.astype(np.float32)).max() <= 15.0 + PIXEL_TOL


def test_same_seed_same_bytes(surrogate: DlibResNetTorch, faces: np.ndarray) -> None:
    gen = FawkesV1([surrogate], mode="mid", config=dataclasses.replace(_short("mid"), batch_size=2))
    first, second = gen.cloak(faces, seed=7), gen.cloak(faces, seed=7)
    assert first.faces.tobytes() == second.faces.tobytes()
    assert first.dssim.tobytes() == second.dssim.tobytes()
    assert not np.array_equal(first.faces, gen.cloak(faces, seed=8).faces)


def test_weight_schedule_follows_fawkes(low_fawkes: FawkesV1) -> None:
    """Doubling below the band, halving above, reset to 1 inside it, at a bound, and when DSSIM crosses the band."""
    th = FAWKES_V1_MODES["low"].th
    below, inside, above = 0.5 * th, th, 2.0 * th
    cases = [  # (weight, side, DSSIM) -> (weight, side)
        ((1.0, 1, below), (2.0, 1)),
        ((128.0, 1, below), (256.0, 1)),
        ((256.0, 1, below), (1.0, 0)),
        ((4.0, -1, below), (1.0, 1)),
        ((4.0, -1, above), (2.0, -1)),
        ((1.0, 1, above), (1.0, -1)),
        ((1.0 / 64, -1, above), (1.0 / 128, -1)),
        ((1.0 / 128, -1, above), (1.0, 0)),
        ((32.0, 1, inside), (1.0, 0)),
    ]
    weight, side, d = (torch.tensor(col, dtype=torch.float32) for col in zip(*(c[0] for c in cases), strict=True))
    new_weight, new_side = low_fawkes._next_weight(weight, side, d)
    assert new_weight.tolist() == [c[1][0] for c in cases]
    assert new_side.tolist() == [c[1][1] for c in cases]


@pytest.mark.parametrize("mode", ["low", "mid", "high"])
def test_noise_matches_its_budget(faces: np.ndarray, mode: str) -> None:
    noise = NoiseCloak(mode=mode)
    out = noise.cloak(faces, seed=3)
    th = FAWKES_V1_MODES[mode].th
    np.testing.assert_allclose(out.dssim, th, rtol=0.01)
    measured = [image_metrics(clean, cloaked)["dssim"] for clean, cloaked in zip(faces, out.faces, strict=True)]
    np.testing.assert_allclose(out.dssim, measured, rtol=1e-3, atol=1e-6)
    assert np.abs(out.faces - faces.astype(np.float32)).max() <= 15.0
    assert out.faces.tobytes() == noise.cloak(faces, seed=3).faces.tobytes()
    assert noise.name == f"noise:{mode}" and noise.params()["target_dssim"] == th


def test_noise_explicit_target(faces: np.ndarray) -> None:
    out = NoiseCloak(config=NoiseConfig(target_dssim=0.03)).cloak(faces, seed=0)
    np.testing.assert_allclose(out.dssim, 0.03, rtol=0.01)


@pytest.mark.parametrize(
    ("field", "value"),
    [("th", 0.0), ("th", 1.5), ("steps", 0), ("lr", -1.0), ("n_surrogates", 0), ("max_change", 0.0),
     ("max_change", 300.0), ("c", -1.0), ("weight_init", 1000.0), ("weight_min", 0.0), ("weight_up_below", 1.2),
     ("weight_down_above", 0.9), ("adadelta_rho", 1.0), ("first_kick", -0.1), ("batch_size", 0)],
)  # fmt: skip
def test_fawkes_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"FawkesV1Config\.{field} must be"):
        dataclasses.replace(FAWKES_V1_MODES["mid"], **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("target_dssim", 0.0), ("max_change", -1.0), ("bisection_steps", 0)])
def test_noise_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"NoiseConfig\.{field} must be"):
        dataclasses.replace(NoiseConfig(target_dssim=0.01), **{field: value})  # type: ignore[arg-type]


class _Relabelled:
    """The real surrogate declared with other metadata: enough to exercise the constructor's checks."""

    def __init__(self, inner: DlibResNetTorch, **changes: object) -> None:
        self._inner = inner
        self.info: ExtractorInfo = dataclasses.replace(inner.info, **changes)  # type: ignore[arg-type]

    def embed(self, faces: np.ndarray) -> np.ndarray:
        return self._inner.embed(faces)

    def torch_module(self) -> torch.nn.Module:
        return self._inner.torch_module()


def test_surrogates_with_different_templates_refused(surrogate: DlibResNetTorch) -> None:
    other = _Relabelled(surrogate, name="dlib-resnet-torch@arcface", template="arcface-112")
    with pytest.raises(ValueError, match="share one alignment template"):
        FawkesV1([surrogate, other], mode="mid")


def test_bad_surrogates_and_modes_refused(surrogate: DlibResNetTorch) -> None:
    with pytest.raises(ValueError, match="differentiable"):
        FawkesV1([_Relabelled(surrogate, differentiable=False)])
    with pytest.raises(ValueError, match="at least one surrogate"):
        FawkesV1([])
    with pytest.raises(ValueError, match="unknown Fawkes v1.0 mode 'ultra'"):
        FawkesV1([surrogate], mode="ultra")
    with pytest.raises(ValueError, match="unknown noise mode"):
        NoiseCloak(mode="ultra")


def test_registry_builds_both_and_records_missing_surrogate(surrogate: DlibResNetTorch, faces: np.ndarray) -> None:
    gen = CLOAKS.create("fawkes-v1.0:mid", surrogates=[surrogate])
    assert isinstance(gen, FawkesV1) and gen.name == "fawkes-v1.0:mid" and gen.template == "dlib-150"
    params = gen.params()
    assert params["surrogates"] == ["dlib-resnet-torch"] and params["surrogates_missing"] == 1
    assert params["th"] == 0.012 and params["steps"] == 75 and params["lr"] == 20.0 and params["preset"] is True
    low = FawkesV1([surrogate, surrogate], mode="low")
    assert low.params()["surrogates"] == ["dlib-resnet-torch"] and low.params()["surrogates_missing"] == 0
    noise = CLOAKS.create("noise:high", template="dlib-150")
    assert noise.name == "noise:high" and noise.template == "dlib-150"
    empty = gen.cloak(faces[:0], seed=0)
    assert empty.faces.shape == (0, 150, 150, 3) and empty.dssim.shape == (0,)


def test_cloak_rejects_non_uint8(low_fawkes: FawkesV1, faces: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        low_fawkes.cloak(faces.astype(np.float32), seed=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_step_loop_memory_setting_applies_once_and_can_be_declined() -> None:
    """``retain_freed_memory`` takes effect through glibc (every value within its limits), and
    ``FAWKES_EVAL_MALLOC=system`` leaves glibc's defaults alone; each in a fresh process, as it is per process."""
    code = "from attacks.surrogates import retain_freed_memory as r; print(r(), r())"

    def run(extra: dict[str, str]) -> str:
        env = {k: v for k, v in os.environ.items() if k != "FAWKES_EVAL_MALLOC"} | extra
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert run({}) == "True True"
    assert run({"FAWKES_EVAL_MALLOC": "system"}) == "False False"
