"""Cloak generator speed, as ratios against baselines timed in the same process on the same faces.

- Against ART: ``FeatureAdversariesPyTorch`` (PGD in the surrogate's feature space) driven through ART's own API at
  equal work: the same surrogate module object, the same step count, the same batch, the same L-inf budget.
- Against the model-only bound: ``steps`` x one forward and one backward pass (to the input) of the surrogate at
  the same batch, memory layout and precision as the generator feeds it; no cloak can do fewer model passes. Timed
  two ways: ``steps`` x the fastest single pass (``bound_seconds``, the goals' figure), and ``steps`` passes in a
  row as one block per round (``bound_block_seconds``), the statistic the contenders get: a whole run's minimum
  over rounds. On a shared machine the fastest of many short passes is the luckiest moment, which no run of
  seconds matches, so the first is the stricter bound and the second the like-for-like one.
- Batched against one photo at a time (Fawkes' own command line cloaks one image per batch by default).
- Against an earlier revision's generator (``before``, optional): the same faces and settings, timed in the same
  rounds, so a before/after ratio comes from one process.
- A profile of the generator's steps: which operators the time goes to.

Each mode is timed in ``rounds`` interleaved rounds (the bound, ours, ART, before); each figure is the minimum over
its rounds (and over the bound's passes): on a shared machine other work only ever adds time, so the minimum is the
figure least inflated by it, and interleaving exposes every contender to the same drift.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks.fawkes_v1 import FAWKES_V1_MODES, FawkesV1, FawkesV1Config
from attacks.surrogates import mixed_precision
from fawkes_eval.types import DifferentiableExtractor

# ART's PGD moves every pixel by this much per step (0..255 units); speed does not depend on it.
ART_STEP_SIZE = 1.0


@dataclass(frozen=True)
class CloakBenchConfig:
    modes: tuple[str, ...] = ("low", "mid", "high")
    batch: int = 4  # faces per batch for our generator, ART and the bound alike; also how many faces are timed
    one_at_a_time: int = 2  # faces cloaked with batch size 1, against the batched rate of the first mode
    steps: int | None = None  # replaces every mode's step count (the quick path); None keeps the release presets
    amp: bool = False  # bfloat16 autocast of the surrogate in our generator and the bound (CUDA only)
    bound_repeats: int = 5  # forward+backward passes timed for the bound before and after each mode; median of all
    profile_steps: int = 3  # steps of the profiled run of the first mode; 0 for no profile
    rounds: int = 1  # interleaved timing rounds per mode; every figure is the minimum over them

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in FAWKES_V1_MODES]
        if unknown or not self.modes:
            raise ValueError(f"CloakBenchConfig.modes must name Fawkes v1.0 modes {list(FAWKES_V1_MODES)}, got {unknown}")
        if (self.batch < 1 or self.one_at_a_time < 0 or self.bound_repeats < 1 or self.profile_steps < 0
                or self.rounds < 1):
            raise ValueError("CloakBenchConfig: batch, bound_repeats and rounds must be >= 1, the others >= 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"CloakBenchConfig.steps must be >= 1 or None, got {self.steps}")


@dataclass(frozen=True)
class ModeSpeed:
    """One mode at one batch: seconds for the whole batch, images/s, and the two ratios the goals are about."""

    cloak: str
    steps: int
    batch: int
    fawkes_seconds: float
    art_seconds: float
    bound_seconds: float  # steps x min(forward + backward) of the surrogate at this batch, channels-last
    bound_nchw_seconds: float  # the same in the default layout (NCHW), the one ART feeds
    fawkes_images_per_s: float
    art_images_per_s: float
    speedup_vs_art: float  # our images/s over ART's (goal: >= 1.5)
    over_bound: float  # our seconds over the bound's (goal: <= 1.15 on the CPU, <= 1.3 on a GPU)
    art_over_bound: float
    rounds: int = 1
    fawkes_seconds_all: tuple[float, ...] = ()  # every round's time, the minimum of which is fawkes_seconds
    art_seconds_all: tuple[float, ...] = ()
    before_seconds: float | None = None  # the earlier revision's generator (``before``), same faces and rounds
    speedup_vs_before: float | None = None  # before's seconds over ours
    bound_block_seconds: float | None = None  # steps passes in a row, the minimum over rounds
    over_bound_block: float | None = None  # our seconds over bound_block_seconds
    before_seconds_all: tuple[float, ...] = ()
    bound_block_seconds_all: tuple[float, ...] = ()


@dataclass(frozen=True)
class BatchingSpeed:
    cloak: str
    batch: int
    batched_images_per_s: float
    one_at_a_time_faces: int
    one_at_a_time_seconds: float
    one_at_a_time_images_per_s: float
    speedup: float  # batched over one at a time (goal: >= 5)


@dataclass(frozen=True)
class ProfiledOp:
    op: str
    calls: int
    self_seconds: float
    share: float  # of the profiled run's total self time


@dataclass(frozen=True)
class CloakBenchmark:
    config: CloakBenchConfig
    device: str
    surrogate: str
    faces: str
    modes: list[ModeSpeed]
    batching: BatchingSpeed | None
    profile: list[ProfiledOp]
    profile_note: str
    before: str | None = None  # where the earlier revision's generator came from


def _timed(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def forward_backward_pass(
    module: torch.nn.Module, faces: np.ndarray, device: torch.device, amp: bool,
    layout: torch.memory_format = torch.channels_last,
) -> Callable[[], None]:
    """One forward and one backward pass to the input (parameters frozen) of float 0..255 faces in ``layout``
    (channels-last, as our generator feeds its surrogates), at the given precision; warmed up once."""
    x = torch.from_numpy(faces.astype(np.float32)).permute(0, 3, 1, 2)
    x = x.to(device, memory_format=layout)

    def one_pass() -> None:
        delta = torch.zeros_like(x, requires_grad=True)
        with mixed_precision(device, amp):
            out = module(x + delta)
        torch.autograd.grad(out.float().pow(2).sum(), [delta])

    one_pass()  # warm-up: kernel selection, allocator
    return one_pass


def _repeat(work: Callable[[], None], times: int) -> None:
    for _ in range(times):
        work()


def forward_backward_seconds(
    module: torch.nn.Module, faces: np.ndarray, device: torch.device, amp: bool, repeats: int,
    layout: torch.memory_format = torch.channels_last,
) -> list[float]:
    """Seconds of each of ``repeats`` single passes (``forward_backward_pass``)."""
    one_pass = forward_backward_pass(module, faces, device, amp, layout)
    return [_timed(device, one_pass) for _ in range(repeats)]


class ArtBaseline:
    """ART's FeatureAdversariesPyTorch on the surrogate module, through ART's own estimator and attack API."""

    def __init__(self, surrogate: DifferentiableExtractor, module: torch.nn.Module, device: torch.device) -> None:
        from art.estimators.classification import PyTorchClassifier

        size = surrogate.info.input_size
        # The embedding stands in for the logits: FeatureAdversaries reads the last layer's activations.
        self.estimator = PyTorchClassifier(
            model=module, loss=torch.nn.MSELoss(), input_shape=(3, size, size), nb_classes=surrogate.info.embedding_dim,
            clip_values=(0.0, 255.0), device_type="gpu" if device.type == "cuda" else "cpu",
        )

    def generate(self, faces: np.ndarray, steps: int, batch: int, max_change: float) -> np.ndarray:
        from art.attacks.evasion import FeatureAdversariesPyTorch

        attack = FeatureAdversariesPyTorch(
            self.estimator, delta=max_change, max_iter=steps, batch_size=batch, step_size=ART_STEP_SIZE, verbose=False
        )
        x = np.ascontiguousarray(faces.transpose(0, 3, 1, 2), dtype=np.float32)
        # The guide is another person's face (the batch shifted by one): a targeted push, as ART's attack is.
        result: np.ndarray = attack.generate(x, y=np.roll(x, 1, axis=0))
        return result


def _mode_config(mode: str, config: CloakBenchConfig, batch: int) -> FawkesV1Config:
    preset = FAWKES_V1_MODES[mode]
    steps = config.steps if config.steps is not None else preset.steps
    return dataclasses.replace(preset, steps=steps, batch_size=batch, amp=config.amp)


def profile_generator(generator: FawkesV1, faces: np.ndarray, top: int = 12) -> list[ProfiledOp]:
    """torch.profiler over one cloaking run: the operators with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if generator.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        generator.cloak(faces, seed=0)
    events = prof.key_averages()
    device_time = "self_device_time_total" if generator.device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, device_time) for e in events) or 1.0
    ranked = sorted(events, key=lambda e: getattr(e, device_time), reverse=True)[:top]
    return [ProfiledOp(e.key, e.count, getattr(e, device_time) / 1e6, getattr(e, device_time) / total) for e in ranked]


def run_cloak_benchmarks(
    config: CloakBenchConfig, surrogate: DifferentiableExtractor, faces: np.ndarray, faces_source: str,
    device: str | None = None, before: tuple[Any, str] | None = None,
) -> CloakBenchmark:
    """Every mode's throughput against ART and the bound, batching, and a profile; ``faces``: uint8 (N, S, S, 3)
    with N >= ``config.batch``. ``before``: (a generator class with FawkesV1's constructor, where it came from),
    timed beside ours."""
    if len(faces) < max(config.batch, config.one_at_a_time):
        raise ValueError(f"need {max(config.batch, config.one_at_a_time)} faces, got {len(faces)}")
    batch_faces = faces[: config.batch]
    warm = FawkesV1([surrogate], mode=config.modes[0], config=_mode_config(config.modes[0], config, config.batch),
                    device=device)
    dev = warm.device
    module = surrogate.torch_module()  # the extractor's module: ART runs it; our generator runs a channels-last copy
    art = ArtBaseline(surrogate, module, dev)
    module_cl = copy.deepcopy(module).to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]
    max_change = warm.config.max_change
    # Warm-up of both paths (kernel selection, oneDNN primitive caches, CUDA context) before anything is timed.
    FawkesV1([surrogate], mode=config.modes[0], config=dataclasses.replace(warm.config, steps=1), device=device).cloak(
        batch_faces, seed=0)
    art.generate(batch_faces, steps=1, batch=config.batch, max_change=max_change)

    bound_passes = functools.partial(forward_backward_seconds, module_cl, batch_faces, dev, config.amp,
                                     config.bound_repeats)
    bound_passes_nchw = functools.partial(forward_backward_seconds, module, batch_faces, dev, config.amp,
                                          config.bound_repeats, torch.contiguous_format)
    bound_pass = forward_backward_pass(module_cl, batch_faces, dev, config.amp)
    modes: list[ModeSpeed] = []
    for mode in config.modes:
        generator = FawkesV1([surrogate], mode=mode, config=_mode_config(mode, config, config.batch), device=device)
        steps = generator.config.steps
        earlier = (before[0]([surrogate], mode=mode, config=_mode_config(mode, config, config.batch), device=device)
                   if before is not None else None)
        # Interleaved rounds, the bound timed before and after each: on a shared machine the load drifts during a
        # run of minutes, and the minimum over rounds is the least disturbed figure of each contender.
        passes, passes_nchw = bound_passes(), bound_passes_nchw()
        ours_all, theirs_all, before_all, blocks = [], [], [], []
        for _ in range(config.rounds):
            ours_all.append(_timed(dev, functools.partial(generator.cloak, batch_faces, seed=0)))
            theirs_all.append(_timed(dev, functools.partial(art.generate, batch_faces, steps, config.batch, max_change)))
            if earlier is not None:
                before_all.append(_timed(dev, functools.partial(earlier.cloak, batch_faces, seed=0)))
            blocks.append(_timed(dev, functools.partial(_repeat, bound_pass, steps)))
            passes, passes_nchw = passes + bound_passes(), passes_nchw + bound_passes_nchw()
        ours, theirs = min(ours_all), min(theirs_all)
        per_pass, per_pass_nchw = min(passes), min(passes_nchw)
        bound = steps * per_pass
        modes.append(ModeSpeed(
            generator.name, steps, config.batch, ours, theirs, bound, steps * per_pass_nchw, config.batch / ours,
            config.batch / theirs,
            theirs / ours, ours / bound, theirs / bound, config.rounds, tuple(ours_all), tuple(theirs_all),
            min(before_all) if before_all else None, min(before_all) / ours if before_all else None,
            bound_block_seconds=min(blocks), over_bound_block=ours / min(blocks),
            before_seconds_all=tuple(before_all), bound_block_seconds_all=tuple(blocks),
        ))

    batching = None
    if config.one_at_a_time:
        first = modes[0]
        single = FawkesV1([surrogate], mode=config.modes[0], config=_mode_config(config.modes[0], config, 1), device=device)
        seconds = _timed(dev, lambda: single.cloak(faces[: config.one_at_a_time], seed=0))
        rate = config.one_at_a_time / seconds
        batching = BatchingSpeed(first.cloak, config.batch, first.fawkes_images_per_s, config.one_at_a_time, seconds,
                                 rate, first.fawkes_images_per_s / rate)

    profile: list[ProfiledOp] = []
    note = "not profiled"
    if config.profile_steps:
        profiled = FawkesV1([surrogate], mode=config.modes[0],
                            config=dataclasses.replace(warm.config, steps=config.profile_steps), device=device)
        profile = profile_generator(profiled, batch_faces)
        note = (f"torch.profiler, {profiled.name} with {config.profile_steps} steps at batch {config.batch}, "
                f"self {'CUDA' if dev.type == 'cuda' else 'CPU'} time by operator")
    return CloakBenchmark(config, str(dev), surrogate.info.name, faces_source, modes, batching, profile, note,
                          before[1] if before is not None else None)
