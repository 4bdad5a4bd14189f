"""The surrogate models a cloak optimises against, as one object: checks, device placement, embedding, distances.

Surrogates may differ in template size when they share one alignment geometry: ``arcface-112`` and ``arcface-224``
are the same ArcFace reference at two scales, so a crop at the larger size, resized, is the smaller template's crop.
The generator then works at the largest such template and each surrogate sees the crop resized to its input.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from fawkes_eval.align import TEMPLATES
from fawkes_eval.types import DifferentiableExtractor


def resolve_device(device: str | None) -> torch.device:
    """The requested device, else CUDA when present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _geometry(template: str) -> str:
    # Templates are named <geometry>-<size>; one geometry at two sizes differs only by scale.
    return template.rsplit("-", 1)[0]


@contextmanager
def mixed_precision(device: torch.device, enabled: bool) -> Iterator[None]:
    """bfloat16 autocast for the surrogates' forward pass on CUDA; a no-op on the CPU, which stays exact."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"):
        yield


# glibc's mallopt parameters (malloc.h) and its ceiling on the mmap threshold on 64-bit systems
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed memory in the process for reuse instead of handing it back to the OS (glibc; once per process).

    A step loop frees and allocates the same image-sized buffers, megabytes each, at every step. With glibc's
    defaults such a buffer is a fresh ``mmap``, or the freed top of the heap goes back to the OS, so the next step
    page-faults and zeroes it again: on the CPU that was 10-20 % of a cloak's time (``benchmarks/RESULTS.md``,
    issue 15). This raises the mmap threshold to glibc's ceiling (32 MiB) and stops trimming, so freed buffers are
    reused, as PyTorch's caching allocator does on a GPU. The price: the process keeps its peak heap.
    ``FAWKES_EVAL_MALLOC=system`` keeps glibc's defaults. Returns whether the setting is in force."""
    if os.environ.get("FAWKES_EVAL_MALLOC", "") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)  # musl's mallopt refuses everything


@contextmanager
def step_loop_runtime(device: torch.device) -> Iterator[None]:
    """The runtime settings of a cloak's step loop. On CUDA, cuDNN autotuning (``benchmark``): every step has the
    same shapes, so the engines cuDNN times on the first step serve all the others; TF32 and every other backend
    setting stay as the caller left them. On the CPU, whose results must not depend on it, freed memory is kept for
    reuse (``retain_freed_memory``)."""
    if device.type != "cuda":
        if device.type == "cpu":
            retain_freed_memory()
        yield
        return
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=True, benchmark=True, deterministic=cudnn.deterministic, allow_tf32=cudnn.allow_tf32):
        yield


class SurrogateSet:
    """Differentiable extractors used together by one cloak generator.

    ``template``: the generator's input template (the largest of the surrogates' templates, which must share one
    geometry). ``embed(x)``: float (B, 3, S, S) in 0..255 on ``device`` -> one (B, D_k) tensor per surrogate.
    """

    def __init__(self, surrogates: Sequence[DifferentiableExtractor], device: torch.device, owner: str) -> None:
        if not surrogates:
            raise ValueError(f"{owner} needs at least one surrogate extractor")
        not_diff = [s.info.name for s in surrogates if not s.info.differentiable]
        if not_diff:
            raise ValueError(f"{owner} surrogates must be differentiable; not: {', '.join(not_diff)}")
        unknown = [s.info.template for s in surrogates if s.info.template not in TEMPLATES]
        if unknown:
            raise ValueError(f"{owner}: unknown alignment template(s) {', '.join(unknown)}")
        if len({_geometry(s.info.template) for s in surrogates}) != 1:
            named = ", ".join(f"{s.info.name} ({s.info.template})" for s in surrogates)
            raise ValueError(f"{owner} surrogates must share one alignment geometry (sizes may differ), got: {named}")
        self.extractors = list(surrogates)
        self.device = device
        self.template = max((s.info.template for s in surrogates), key=lambda t: TEMPLATES[t].size)
        self.size = TEMPLATES[self.template].size
        # Private channels-last copies (as attacks/fawkes_v1.py keeps): convolutions find input and weights in one
        # layout, and the extractors' own modules, which embed faces elsewhere, stay exactly as they were.
        self._nets = [
            # Module.to accepts memory_format at run time; torch's type stubs leave it out.
            copy.deepcopy(s.torch_module()).to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
            for s in surrogates
        ]
        self._sizes = [s.info.input_size for s in surrogates]

    @property
    def names(self) -> list[str]:
        return [s.info.name for s in self.extractors]

    def __len__(self) -> int:
        return len(self._nets)

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            net(x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
            for net, size in zip(self._nets, self._sizes, strict=True)
        ]

    def embed_all(self, x_all: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """Embeddings without gradients of (N, 3, S, S) CPU faces, in batches: one float32 (N, D_k) per surrogate."""
        parts: list[list[torch.Tensor]] = [[] for _ in self._nets]
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                for k, f in enumerate(self.embed(x_all[i : i + batch_size].to(self.device))):
                    parts[k].append(f.float())
        return [torch.cat(p) for p in parts]

    def feature_distance(self, clean: np.ndarray, cloaked: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """``||f(x') - f(x)|| / ||f(x)||`` per image and surrogate: float32 (N, len(self)).

        ``clean`` and ``cloaked``: (N, S, S, 3) RGB in 0..255 at ``template``, uint8 or float.
        """
        if clean.shape != cloaked.shape:
            raise ValueError(f"clean and cloaked differ in shape: {clean.shape} vs {cloaked.shape}")
        x_all, y_all = faces_to_tensor(clean, self.size), faces_to_tensor(cloaked, self.size)
        rows = []
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                x = x_all[i : i + batch_size].to(self.device)
                y = y_all[i : i + batch_size].to(self.device)
                pairs = zip(self.embed(x), self.embed(y), strict=True)
                rows.append(torch.stack([(fy - fx).norm(dim=1) / fx.norm(dim=1) for fx, fy in pairs], dim=1).cpu())
        return torch.cat(rows).float().numpy() if rows else np.zeros((0, len(self)), np.float32)


def faces_to_tensor(faces: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S, 3) RGB in 0..255 at the expected ``size`` -> float32 (N, 3, S, S) on the CPU."""
    if faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1:3] != (size, size):
        raise ValueError(f"expected aligned faces (N, {size}, {size}, 3), got shape {faces.shape}")
    return torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


def as_output_faces(batches: list[torch.Tensor], size: int) -> np.ndarray:
    """Concatenate (B, 3, S, S) batches into float32 (N, S, S, 3) in 0..255 on the CPU."""
    if not batches:
        return np.zeros((0, size, size, 3), np.float32)
    return torch.cat(batches).permute(0, 2, 3, 1).float().cpu().contiguous().numpy()


def one_image_guard(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A one-image batch twice on the CPU: oneDNN's convolution backward splits a single image across threads and
    was seen to sum the parts in varying order (see attacks/fawkes_v1.py); with two, threads take whole images."""
    return x.repeat(2, *([1] * (x.dim() - 1))) if len(x) == 1 and device.type == "cpu" else x
