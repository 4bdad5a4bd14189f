"""TensorFlow beside PyTorch in one process: the TF-served zoo models are victims of their own, agree with their
torch twins, and neither framework disturbs the other (threads, results, memory)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch

from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import DifferentiableExtractor

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
TF_TWINS = [("mobileface-tf", "mobileface"), ("hse-faceres-tf", "hse-faceres")]


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; the CI platform)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(("tf_name", "torch_name"), TF_TWINS)
def test_tf_victim_agrees_with_its_torch_twin(tf_name: str, torch_name: str, demo_dataset: Dataset,
                                              aligned: Aligned) -> None:
    load_rooms()
    tf_model, torch_model = EXTRACTORS.create(tf_name), EXTRACTORS.create(torch_name)
    assert (tf_model.info.name, tf_model.info.backend, tf_model.info.differentiable) == (tf_name, "tensorflow", False)
    assert tf_model.info.family == torch_model.info.family and tf_model.info.weight_sha256 == torch_model.info.weight_sha256
    faces = aligned(demo_dataset, tf_model.info.template)[0][::10]
    assert np.abs(tf_model.embed(faces) - torch_model.embed(faces)).max() < 1e-4


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_tf_and_torch_share_a_process(demo_dataset: Dataset, aligned: Aligned) -> None:
    load_rooms()
    faces = aligned(demo_dataset, "arcface-112")[0][::10]
    torch_model = EXTRACTORS.create("mobileface")
    assert isinstance(torch_model, DifferentiableExtractor)
    threads = torch.get_num_threads()
    before = torch_model.embed(faces)
    resident = resident_bytes()
    tf_model = EXTRACTORS.create("mobileface-tf")
    tf_first = tf_model.embed(faces)
    # TensorFlow allocates as it needs, not all it can: one small model costs well under 2 GiB here.
    assert resident_bytes() - resident < 2 * 2**30
    # Interleaved, each framework gives the same answers as alone, and torch keeps its thread pool.
    np.testing.assert_array_equal(torch_model.embed(faces), before)
    np.testing.assert_array_equal(tf_model.embed(faces), tf_first)
    assert torch.get_num_threads() == threads
    x = torch.tensor(faces[:1]).permute(0, 3, 1, 2).float().requires_grad_(True)
    torch_model.torch_module()(x).sum().backward()  # autograd still works with TF loaded
    assert x.grad is not None and x.grad.abs().sum() > 0

    import tensorflow as tf

    cores = len(os.sched_getaffinity(0))
    assert tf.config.threading.get_intra_op_parallelism_threads() in (0, cores)
    for gpu in tf.config.list_physical_devices("GPU"):  # a GPU build must grow its memory, not reserve all of it
        assert tf.config.experimental.get_memory_growth(gpu)
