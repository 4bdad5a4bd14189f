"""The TF.js zoo models served by TensorFlow, registered beside their PyTorch twins (``mobileface-tf``, ...).

Same graphs and weights as ``recognizers/tfjs_models.py``, executed with TensorFlow ops: a TF-served victim for
audits, whose results carry its own name. ``tfjs_graph.import_tensorflow`` limits TF's threads to this process's
cores and makes it grow GPU memory on demand, so it shares a process with PyTorch (tests/test_tf_isolation.py).
"""

from __future__ import annotations

from pathlib import Path

from recognizers.tfjs_models import HseFaceRes, HseFaceResDeep, MobileFace


class MobileFaceTf(MobileFace):
    name = "mobileface-tf"

    def __init__(self, device: str | None = None, weights_dir: Path | None = None) -> None:
        super().__init__(backend="tensorflow", device=device, weights_dir=weights_dir)


class HseFaceResTf(HseFaceRes):
    name = "hse-faceres-tf"

    def __init__(self, device: str | None = None, weights_dir: Path | None = None) -> None:
        super().__init__(backend="tensorflow", device=device, weights_dir=weights_dir)


class HseFaceResDeepTf(HseFaceResDeep):
    name = "hse-faceres-deep-tf"

    def __init__(self, device: str | None = None, weights_dir: Path | None = None) -> None:
        super().__init__(backend="tensorflow", device=device, weights_dir=weights_dir)
