"""A small ONNX executor in PyTorch: an ONNX graph of plain CNN operators as a differentiable ``nn.Module``.

Made for face-recognition graphs such as InsightFace's MobileFaceNet (``w600k_mbf.onnx``), which use only Conv,
PRelu, Add, Flatten, Gemm and BatchNormalization, in the spirit of the project's TF.js executor
(``recognizers/tfjs_graph.py``). The graph's initializers become frozen buffers; the nodes run in the file's
(topologically sorted) order. An operator or attribute the executor does not implement is refused when the module
is built, naming the node, so nothing silently computes a different function.

Shape: the graph's tensors as they are (NCHW for these models); no preprocessing is added here.
Example: ``module = OnnxTorchGraph.from_file(path)``; ``module(x)`` with ``x`` the graph's one input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class OnnxConversionError(ValueError):
    """An ONNX graph this executor cannot run; the message names the file, the node and the reason."""


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    weight = args[1]
    bias = args[2] if len(args) > 2 else None
    pads = list(attrs.get("pads", [0] * (2 * (weight.dim() - 2))))
    half = len(pads) // 2
    begin, end = pads[:half], pads[half:]
    if begin != end:  # ONNX pads are (x1_begin, x2_begin, x1_end, x2_end); F.pad wants last axis first
        x = F.pad(x, [p for pair in zip(reversed(begin), reversed(end), strict=True) for p in pair])
        begin = [0] * half
    return F.conv2d(x, weight, bias, stride=list(attrs.get("strides", [1] * half)), padding=begin,
                    dilation=list(attrs.get("dilations", [1] * half)), groups=int(attrs.get("group", 1)))


def _prelu(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    slope = args[1]
    return torch.where(x >= 0, x, x * slope)  # slope broadcasts as ONNX says (e.g. (C, 1, 1) over NCHW)


def _gemm(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    a = x.t() if attrs.get("transA", 0) else x
    b = args[1].t() if attrs.get("transB", 0) else args[1]
    out = float(attrs.get("alpha", 1.0)) * (a @ b)
    return out + float(attrs.get("beta", 1.0)) * args[2] if len(args) > 2 else out


def _batch_norm(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    scale, bias, mean, var = args[1:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(attrs.get("epsilon", 1e-5)))


def _flatten(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    axis = int(attrs.get("axis", 1))
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _relu(x: torch.Tensor, args: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    return F.relu(x)


Op = Callable[[torch.Tensor, list[torch.Tensor], dict[str, Any]], torch.Tensor]
OPS: dict[str, Op] = {
    "Conv": _conv, "PRelu": _prelu, "Gemm": _gemm, "BatchNormalization": _batch_norm, "Flatten": _flatten,
    "Relu": _relu,
    "Add": lambda x, args, attrs: x + args[1], "Sub": lambda x, args, attrs: x - args[1],
    "Mul": lambda x, args, attrs: x * args[1], "Identity": lambda x, args, attrs: x,
}
# Attributes each operator's implementation honours; anything else makes the graph a different function.
KNOWN_ATTRIBUTES: dict[str, set[str]] = {
    "Conv": {"pads", "strides", "dilations", "group", "kernel_shape"}, "Gemm": {"alpha", "beta", "transA", "transB"},
    "BatchNormalization": {"epsilon", "momentum"}, "Flatten": {"axis"},
}


class OnnxTorchGraph(nn.Module):
    """An ONNX graph of the operators in ``OPS`` as a frozen module: one input tensor in, the first output out."""

    def __init__(self, model: Any, source: str = "<onnx>") -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in constants]
        if len(inputs) != 1:
            raise OnnxConversionError(f"{source}: expected one graph input, found {inputs}")
        self.input_name = inputs[0]
        self.output_name = graph.output[0].name
        self._names: dict[str, str] = {}  # ONNX tensor name -> buffer name (ONNX names need not be identifiers)
        for name, value in constants.items():
            buffer = f"c{len(self._names)}"
            self._names[name] = buffer
            self.register_buffer(buffer, torch.from_numpy(np.array(value, dtype=np.float32)))
        self._nodes: list[tuple[str, list[str], str, dict[str, Any]]] = []
        for index, node in enumerate(graph.node):
            where = f"{source}: node {index} ({node.op_type} {node.name or node.output[0]})"
            if node.op_type not in OPS:
                raise OnnxConversionError(f"{where}: operator not supported by this executor")
            attrs = _attributes(node)
            unknown = set(attrs) - KNOWN_ATTRIBUTES.get(node.op_type, set())
            if unknown:
                raise OnnxConversionError(f"{where}: attributes not supported: {sorted(unknown)}")
            if node.op_type == "Conv" and len(attrs.get("kernel_shape", [1, 1])) != 2:
                raise OnnxConversionError(f"{where}: only 2-D convolutions are supported")
            if len(node.output) != 1:
                raise OnnxConversionError(f"{where}: expected one output, found {len(node.output)}")
            self._nodes.append((node.op_type, list(node.input), node.output[0], attrs))

    @classmethod
    def from_file(cls, path: Path) -> OnnxTorchGraph:
        import onnx

        return cls(onnx.load(str(path)), source=str(path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for op, inputs, output, attrs in self._nodes:
            args = [values[n] if n in values else getattr(self, self._names[n]) for n in inputs if n]
            values[output] = OPS[op](args[0], args, attrs)
        return values[self.output_name]
