"""A small TensorFlow.js graph-model loader with two executors: PyTorch (differentiable) and TensorFlow.

``load_graph_model(json_path)`` parses a ``format: graph-model`` JSON (``modelTopology.node`` is a GraphDef as
JSON) and its weight shards (dequantised to float32). ``plan(graph, output, inputs)`` lists, in execution order,
only the nodes the requested output needs, each reduced to a backend-neutral ``Step`` (attributes decoded, static
constant inputs such as paddings and axes read out). ``TorchGraph`` runs a plan as an ``nn.Module``;
``TfGraph`` runs it with TensorFlow ops (imported lazily). Tensors stay NHWC, as in the graph, in both backends.

Supported ops: Const, Placeholder, Identity, Conv2D, DepthwiseConv2dNative, _FusedConv2D,
FusedDepthwiseConv2dNative (BiasAdd, then optionally Relu or Prelu), MatMul, _FusedMatMul, Pad, Add, AddV2, Sub,
Mul, Maximum, Minimum, Relu, Abs, Square, Rsqrt, Sigmoid, Softmax, Sum, Mean, Squeeze, Reshape.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

UNARY_OPS = ("Identity", "Relu", "Abs", "Square", "Rsqrt", "Sigmoid", "Softmax")
BINARY_OPS = ("Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum")
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative")
ACTIVATIONS = (None, "Relu", "Prelu")

_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("bool")}
_QUANT_DTYPES: dict[str, np.dtype[Any]] = {
    "uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2"),
}


class GraphError(ValueError):
    """A graph model that cannot be loaded or run; the message names the file or the node and op."""


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]  # producer node names (":0" and control inputs stripped)
    attr: dict[str, Any]

    def ints(self, key: str) -> list[int]:
        return [int(v) for v in self.attr.get(key, {}).get("list", {}).get("i", [])]

    def string(self, key: str, default: str = "") -> str:
        value = self.attr.get(key, {}).get("s")
        return base64.b64decode(value).decode() if value is not None else default

    def strings(self, key: str) -> list[str]:
        return [base64.b64decode(v).decode() for v in self.attr.get(key, {}).get("list", {}).get("s", [])]

    def flag(self, key: str) -> bool:
        return bool(self.attr.get(key, {}).get("b", False))


@dataclass(frozen=True)
class GraphModel:
    nodes: dict[str, Node]
    weights: dict[str, np.ndarray]  # Const node name -> value (read-only)
    source: str  # the JSON file, for error messages

    def placeholder_shape(self, name: str) -> list[int | None]:
        dims = self.nodes[name].attr.get("shape", {}).get("shape", {}).get("dim", [])
        return [None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims]


def _input_name(ref: str) -> str:
    name, _, index = ref.partition(":")
    if index not in ("", "0"):
        raise GraphError(f"input {ref!r}: only the first output of a node is supported")
    return name


def _decode_group(group: dict[str, Any], base: Path) -> dict[str, np.ndarray]:
    """Weights of one manifest group: its shards concatenated, entries laid out back to back."""
    buffer = b"".join((base / p).read_bytes() for p in group["paths"])
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in group["weights"]:
        name, shape, dtype = spec["name"], [int(s) for s in spec["shape"]], spec["dtype"]
        count = math.prod(shape)
        quant = spec.get("quantization")
        stored = (_QUANT_DTYPES if quant else _DTYPES).get(quant["dtype"] if quant else dtype)
        if stored is None or dtype not in _DTYPES:
            raise GraphError(f"{base}: weight {name!r} has unsupported dtype {dtype} / {quant}")
        if offset + count * stored.itemsize > len(buffer):
            raise GraphError(f"{base}: weight shards of {group['paths']} end before weight {name!r}")
        raw = np.frombuffer(buffer, dtype=stored, count=count, offset=offset)
        offset += count * stored.itemsize
        if quant and quant["dtype"] != "float16":
            value = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            if dtype == "int32":
                value = np.round(value)
        else:
            value = raw
        array = value.astype(_DTYPES[dtype]).reshape(shape)
        array.setflags(write=False)
        out[name] = array
    return out


def load_graph_model(json_path: Path) -> GraphModel:
    """Parse a TF.js graph model; shards are read from the manifest's paths, relative to the JSON file."""
    spec = json.loads(json_path.read_text())
    if spec.get("format") != "graph-model" or "modelTopology" not in spec:
        raise GraphError(f"{json_path}: not a TF.js graph model (format {spec.get('format')!r})")
    nodes: dict[str, Node] = {}
    for raw in spec["modelTopology"].get("node", []):
        inputs = tuple(_input_name(i) for i in raw.get("input", []) if not i.startswith("^"))
        nodes[raw["name"]] = Node(raw["name"], raw["op"], inputs, raw.get("attr", {}))
    weights: dict[str, np.ndarray] = {}
    for group in spec.get("weightsManifest", []):
        weights.update(_decode_group(group, json_path.parent))
    missing = [n.name for n in nodes.values() if n.op == "Const" and n.name not in weights]
    if missing:
        raise GraphError(f"{json_path}: Const nodes without weights (inline constants unsupported): {missing[:5]}")
    return GraphModel(nodes, weights, str(json_path))


@dataclass(frozen=True)
class Step:
    """One node to execute: ``inputs`` are its tensor inputs (Const or computed); static values are in ``attrs``."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


def _static(graph: GraphModel, node: Node, index: int) -> np.ndarray:
    """A constant input that shapes the computation (paddings, axes, shapes): read now, not executed."""
    if index >= len(node.inputs):
        raise GraphError(f"{graph.source}: node {node.name!r} ({node.op}) lacks input {index}")
    name = node.inputs[index]
    if graph.nodes[name].op != "Const":
        raise GraphError(f"{graph.source}: node {node.name!r} ({node.op}) needs a constant input {index}, got {name!r}")
    return graph.weights[name]


def _fused(graph: GraphModel, node: Node) -> tuple[bool, str | None]:
    """(has bias, activation) of a fused conv or matmul; anything else is refused."""
    ops = node.strings("fused_ops")
    if not ops:
        return False, None
    if ops[0] != "BiasAdd" or len(ops) > 2 or (len(ops) == 2 and ops[1] not in ACTIVATIONS):
        raise GraphError(f"{graph.source}: node {node.name!r} ({node.op}): unsupported fused ops {ops}")
    return True, ops[1] if len(ops) == 2 else None


def _step(graph: GraphModel, node: Node) -> Step:
    op, name = node.op, node.name
    if op in UNARY_OPS or op in BINARY_OPS:
        return Step(name, op, node.inputs)
    if op in CONV_OPS:
        fmt = node.string("data_format", "NHWC")
        if fmt != "NHWC":
            raise GraphError(f"{graph.source}: node {name!r} ({op}): data_format {fmt} unsupported")
        if graph.nodes[node.inputs[1]].op != "Const":
            raise GraphError(f"{graph.source}: node {name!r} ({op}): the filter must be a constant")
        strides, dilations = node.ints("strides") or [1] * 4, node.ints("dilations") or [1] * 4
        explicit = node.ints("explicit_paddings") or [0] * 8
        bias, activation = _fused(graph, node)
        attrs = {
            "depthwise": "Depthwise" in op, "strides": (strides[1], strides[2]),
            "dilations": (dilations[1], dilations[2]), "padding": node.string("padding"),
            "explicit": ((explicit[2], explicit[3]), (explicit[4], explicit[5])),
            "bias": bias, "activation": activation,
        }
        return Step(name, "Conv", node.inputs[: 2 + bias + (activation == "Prelu")], attrs)
    if op in ("MatMul", "_FusedMatMul"):
        bias, activation = _fused(graph, node)
        attrs = {"transpose_a": node.flag("transpose_a"), "transpose_b": node.flag("transpose_b"),
                 "bias": bias, "activation": activation}
        return Step(name, "MatMul", node.inputs[: 2 + bias + (activation == "Prelu")], attrs)
    if op == "Pad":
        paddings = [tuple(int(v) for v in row) for row in _static(graph, node, 1)]
        return Step(name, op, node.inputs[:1], {"paddings": paddings})
    if op == "Reshape":
        return Step(name, op, node.inputs[:1], {"shape": [int(v) for v in _static(graph, node, 1).reshape(-1)]})
    if op in ("Sum", "Mean"):
        axes = [int(v) for v in _static(graph, node, 1).reshape(-1)]
        return Step(name, op, node.inputs[:1], {"axes": axes, "keep_dims": node.flag("keep_dims")})
    if op == "Squeeze":
        return Step(name, op, node.inputs, {"axes": node.ints("squeeze_dims")})
    raise GraphError(f"{graph.source}: node {name!r}: unsupported op {op!r}")


def plan(graph: GraphModel, output: str, inputs: Sequence[str]) -> list[Step]:
    """The steps that compute ``output`` from the placeholders ``inputs``, in dependency order."""
    if output not in graph.nodes:
        raise GraphError(f"{graph.source}: no node named {output!r}")
    steps: list[Step] = []
    done: set[str] = set(inputs)
    pending: set[str] = set()
    stack: list[tuple[str, Step | None]] = [(output, None)]
    while stack:  # iterative post-order: deep graphs would overflow recursion
        name, ready = stack.pop()
        if ready is not None:
            steps.append(ready)
            done.add(name)
            continue
        if name in done:
            continue
        if name in pending:
            raise GraphError(f"{graph.source}: node {name!r} is part of a cycle")
        node = graph.nodes.get(name)
        if node is None:
            raise GraphError(f"{graph.source}: a node refers to the missing input {name!r}")
        if node.op == "Const":
            done.add(name)
            continue
        if node.op == "Placeholder":
            raise GraphError(f"{graph.source}: {output!r} needs placeholder {name!r}, not among inputs {list(inputs)}")
        step = _step(graph, node)  # fails early on unsupported ops, and says which inputs are tensors
        pending.add(name)
        stack.append((name, step))
        stack.extend((i, None) for i in step.inputs if i not in done)
    return steps


def fuse(graph: GraphModel, steps: list[Step], output: str) -> list[Step]:
    """Rewrite a plan into fewer passes over memory, for the PyTorch executor (TensorFlow runs the graph as written).

    - Pad followed by a VALID convolution -> the convolution with explicit padding;
    - a convolution followed by a per-channel Mul and/or Add (batch norm) -> folded into its filter and bias
      (``scale`` / ``shift`` attrs naming the constants);
    - Maximum(0, x) + gamma * Minimum(0, x), the converter's spelling of PReLU -> ``Prelu`` (inputs x, gamma);
    - chains of Relu and Maximum / Minimum with a scalar constant (ReLU6) -> one ``Clip`` (attrs lo, hi, in_place).
    A result that is used anywhere else (or is the output) is never fused away.
    """
    uses = Counter(i for s in steps for i in s.inputs)
    uses[output] += 1
    producer = {s.name: s for s in steps}
    consumer = {i: s for s in steps for i in s.inputs}  # the only consumer, where uses == 1
    removed: set[str] = set()
    rewritten: dict[str, Step] = {}

    def only_consumer(name: str, *ops: str) -> Step | None:
        after = consumer.get(name)
        if uses[name] != 1 or after is None or after.name in removed:
            return None
        after = rewritten.get(after.name, after)
        return after if after.op in ops else None

    def only_producer(name: str, op: str) -> Step | None:
        before = producer.get(name)
        return before if uses[name] == 1 and before is not None and before.op == op else None

    def const_and_data(step: Step) -> tuple[np.ndarray, str, str] | None:
        """(value, const name, data input) of a binary step with exactly one constant input."""
        if len(step.inputs) != 2:
            return None
        a, b = step.inputs
        if graph.nodes[a].op == "Const" and graph.nodes[b].op != "Const":
            return graph.weights[a], a, b
        if graph.nodes[b].op == "Const" and graph.nodes[a].op != "Const":
            return graph.weights[b], b, a
        return None

    def bound(step: Step) -> tuple[str, float] | None:
        """(data input, bound) of Relu, or of Maximum / Minimum with a scalar constant."""
        if step.op == "Relu":
            return step.inputs[0], 0.0
        found = const_and_data(step) if step.op in ("Maximum", "Minimum") else None
        return (found[2], float(found[0].reshape(()))) if found and found[0].size == 1 else None

    def per_channel(value: np.ndarray, channels: int) -> bool:
        return value.size == 1 or (value.size == channels and value.shape[-1] == channels)

    # PReLU first: its Maximum and Minimum would otherwise be taken for clamps
    for add in steps:
        if add.op not in ("Add", "AddV2") or len(add.inputs) != 2:
            continue
        for a, b in (add.inputs, add.inputs[::-1]):
            high, mul = only_producer(a, "Maximum"), only_producer(b, "Mul")
            gamma = const_and_data(mul) if mul else None
            low = only_producer(gamma[2], "Minimum") if gamma else None
            x = bound(high) if high else None
            if gamma and low and x and x[1] == 0.0 and bound(low) == x and gamma[0].ndim <= 1:
                removed.update((a, b, low.name))
                rewritten[add.name] = Step(add.name, "Prelu", (x[0], gamma[1]))
                break

    out: list[Step] = []
    for original in steps:
        if original.name in removed:
            continue
        step = rewritten.get(original.name, original)
        if step.op == "Pad":
            conv = only_consumer(step.name, "Conv")
            (n0, n1), (top, bottom), (left, right), (c0, c1) = step.attrs["paddings"]
            if conv and conv.inputs[0] == step.name and conv.attrs["padding"] == "VALID" and not n0 + n1 + c0 + c1:
                attrs = {**conv.attrs, "padding": "EXPLICIT", "explicit": ((top, bottom), (left, right))}
                rewritten[conv.name] = Step(conv.name, "Conv", (step.inputs[0], *conv.inputs[1:]), attrs)
                continue
        elif step.op == "Conv" and step.attrs["activation"] is None:
            channels = _out_channels(graph.weights[step.inputs[1]].shape, step.attrs["depthwise"])
            attrs, last = dict(step.attrs), step
            for key, ops in (("scale", ("Mul",)), ("shift", ("Add", "AddV2"))):
                after = only_consumer(last.name, *ops)
                found = const_and_data(after) if after else None
                if after and found and found[2] == last.name and per_channel(found[0], channels):
                    attrs[key] = found[1]
                    removed.add(after.name)
                    last = after
            step = Step(last.name, "Conv", step.inputs, attrs)
        elif (first := bound(step)) is not None:
            lo, hi, link, value = -math.inf, math.inf, step, first[1]
            while True:
                lo, hi = (lo, min(hi, value)) if link.op == "Minimum" else (max(lo, value), max(hi, value))
                after = only_consumer(link.name, "Relu", "Maximum", "Minimum")
                following = bound(after) if after else None
                if after is None or following is None or following[0] != link.name:
                    break
                removed.add(after.name)
                link, value = after, following[1]
            # a freshly computed input (not a view) that nobody else reads may be clamped in place
            source = producer.get(first[0])
            in_place = uses[first[0]] == 1 and source is not None and source.op in ("Conv", "MatMul", *BINARY_OPS)
            step = Step(link.name, "Clip", (first[0],), {"lo": lo, "hi": hi, "in_place": in_place})
        out.append(step)
    return out


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) along one axis: the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------------------------------------------
# PyTorch backend

_TORCH_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Identity": lambda x: x, "Relu": torch.relu, "Abs": torch.abs, "Square": torch.square,
    "Rsqrt": torch.rsqrt, "Sigmoid": torch.sigmoid, "Softmax": lambda x: torch.softmax(x, dim=-1),
}
_TORCH_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "Maximum": torch.maximum, "Minimum": torch.minimum,
}

TorchFn = Callable[..., torch.Tensor]


def _torch_activation(y: torch.Tensor, activation: str | None, alpha: torch.Tensor | None) -> torch.Tensor:
    if activation == "Relu":
        return torch.relu(y)
    if activation == "Prelu":
        assert alpha is not None
        return torch.clamp(y, min=0) + alpha * torch.clamp(y, max=0)
    return y


def _torch_conv(attrs: dict[str, Any], kernel: tuple[int, int], groups: int) -> TorchFn:
    (sh, sw), (dh, dw), mode = attrs["strides"], attrs["dilations"], attrs["padding"]

    def conv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
             alpha: torch.Tensor | None = None) -> torch.Tensor:
        xc = x.permute(0, 3, 1, 2)  # an NCHW view in channels-last memory: no copy, and the fast CPU kernel
        if mode == "SAME":
            (top, bottom), (left, right) = (same_padding(xc.shape[2], kernel[0], sh, dh),
                                            same_padding(xc.shape[3], kernel[1], sw, dw))
        elif mode == "EXPLICIT":
            (top, bottom), (left, right) = attrs["explicit"]
        else:
            top = bottom = left = right = 0
        padding = (top, left)
        if (top, left) != (bottom, right):  # TF puts the odd pixel after; conv2d pads symmetrically only
            xc = F.pad(xc, (left, right, top, bottom))
            padding = (0, 0)
        y = F.conv2d(xc, w, bias, stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=groups)
        return _torch_activation(y.permute(0, 2, 3, 1), attrs["activation"], alpha)
    return conv


def _torch_matmul(attrs: dict[str, Any]) -> TorchFn:
    def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None,
               alpha: torch.Tensor | None = None) -> torch.Tensor:
        y = (a.mT if attrs["transpose_a"] else a) @ (b.mT if attrs["transpose_b"] else b)
        return _torch_activation(y if bias is None else y + bias, attrs["activation"], alpha)
    return matmul


def _torch_fn(step: Step, filter_shape: tuple[int, ...]) -> TorchFn:
    op, attrs = step.op, step.attrs
    if op in _TORCH_UNARY:
        return _TORCH_UNARY[op]
    if op in _TORCH_BINARY:
        return _TORCH_BINARY[op]
    if op == "Conv":
        kh, kw, c_in = filter_shape[:3]
        return _torch_conv(attrs, (kh, kw), c_in if attrs["depthwise"] else 1)
    if op == "MatMul":
        return _torch_matmul(attrs)
    if op == "Prelu":  # on a channels-first view: one pass, where the broadcasting form takes four
        return lambda x, gamma: F.prelu(x.movedim(-1, 1), gamma.reshape(-1)).movedim(1, -1)
    if op == "Clip":
        lo, hi = (None if math.isinf(attrs["lo"]) else attrs["lo"]), (None if math.isinf(attrs["hi"]) else attrs["hi"])
        if attrs["in_place"]:
            return lambda x: torch.clamp(x, lo, hi) if torch.is_grad_enabled() else x.clamp_(lo, hi)
        return lambda x: torch.clamp(x, lo, hi)
    if op == "Pad":
        flat = [v for pair in reversed(attrs["paddings"]) for v in pair]  # F.pad lists the last axis first
        return lambda x: F.pad(x, flat)
    if op == "Reshape":
        return lambda x: x.reshape(attrs["shape"])
    if op == "Sum":
        return lambda x: torch.sum(x, dim=attrs["axes"], keepdim=attrs["keep_dims"])
    if op == "Mean":
        return lambda x: torch.mean(x, dim=attrs["axes"], keepdim=attrs["keep_dims"])
    if op == "Squeeze":
        return lambda x: torch.squeeze(x, dim=attrs["axes"]) if attrs["axes"] else torch.squeeze(x)
    raise GraphError(f"node {step.name!r}: no PyTorch implementation of {op!r}")


def _out_channels(filter_shape: tuple[int, ...], depthwise: bool) -> int:
    return filter_shape[2] * filter_shape[3] if depthwise else filter_shape[3]


def _torch_filter(value: np.ndarray, depthwise: bool) -> np.ndarray:
    """TF filter layouts to PyTorch's: HWIO -> OIHW; depthwise HWCM -> (C*M, 1, H, W), channel c*M + m as in TF."""
    if depthwise:
        kh, kw, c, m = value.shape
        return value.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]
    return value.transpose(3, 2, 0, 1)


class TorchGraph(nn.Module):
    """Computes one output node of a graph model from its placeholders, NHWC in and out, differentiably.

    The plan is rewritten by ``fuse`` first. The graph's float constants become frozen parameters
    (``requires_grad_(True)`` to fine-tune); convolution filters are stored in PyTorch's layout.
    """

    def __init__(self, graph: GraphModel, output: str, inputs: Sequence[str]) -> None:
        super().__init__()
        torch.set_flush_denormal(True)  # denormals in these graphs make CPU inference 5-10x slower
        self.input_names = tuple(inputs)
        self.output_name = output
        self.constants = nn.ParameterList()
        index: dict[str, int] = {}

        def constant(key: str, make: Callable[[], np.ndarray]) -> int:
            if key not in index:
                index[key] = len(self.constants)
                self.constants.append(nn.Parameter(torch.tensor(make()), requires_grad=False))
            return index[key]

        def ref(name: str) -> str | int:
            return name if graph.nodes[name].op != "Const" else constant(name, lambda: graph.weights[name])

        # each step: (output name, function, inputs as node names or indices into self.constants)
        self._steps: list[tuple[str, TorchFn, tuple[str | int, ...]]] = []
        for step in fuse(graph, plan(graph, output, inputs), output):
            if step.op == "Conv":
                refs = [ref(step.inputs[0]), *self._conv_constants(graph, step, constant)]
            else:
                refs = [ref(name) for name in step.inputs]
            filter_shape = graph.weights[step.inputs[1]].shape if step.op == "Conv" else ()
            self._steps.append((step.name, _torch_fn(step, filter_shape), tuple(refs)))

    @staticmethod
    def _conv_constants(graph: GraphModel, step: Step, constant: Callable[[str, Callable[[], np.ndarray]], int]
                        ) -> list[int]:
        """Filter in PyTorch's layout (batch-norm scale folded in), bias (shift folded in), PReLU alpha if fused."""
        attrs, weights = step.attrs, graph.weights
        filter_name = step.inputs[1]
        w = weights[filter_name]
        channels = _out_channels(w.shape, attrs["depthwise"])
        scale = weights[attrs["scale"]].reshape(-1) if "scale" in attrs else np.ones(1, np.float32)
        shift = weights[attrs["shift"]].reshape(-1) if "shift" in attrs else np.zeros(1, np.float32)
        bias = weights[step.inputs[2]] if attrs["bias"] else np.zeros(1, np.float32)
        folded = "scale" in attrs or "shift" in attrs
        # ":" cannot occur in node names, so derived constants never collide with the graph's own
        refs = [constant(f"{step.name if folded else filter_name}:filter",
                         lambda: _torch_filter(w, attrs["depthwise"]) * scale.reshape(-1, 1, 1, 1))]
        if attrs["bias"] or folded:
            refs.append(constant(f"{step.name}:bias", lambda: np.broadcast_to(bias * scale + shift, (channels,))))
        if attrs["activation"] == "Prelu":
            refs.append(constant(step.inputs[-1], lambda: weights[step.inputs[-1]]))
        return refs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs, strict=True))
        constants = list(self.constants)
        for name, fn, refs in self._steps:
            env[name] = fn(*(constants[r] if isinstance(r, int) else env[r] for r in refs))
        return env[self.output_name]


# ---------------------------------------------------------------------------------------------------------------
# TensorFlow backend

def import_tensorflow() -> Any:
    """Import TensorFlow quietly, with threads limited to this process's cores and GPU memory grown on demand."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cores))  # these graphs are chains
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # the runtime is already initialised (another model configured it): keep its settings
    return tf


def _tf_fn(tf: Any, step: Step) -> Callable[..., Any]:
    op, attrs = step.op, step.attrs
    unary = {"Identity": tf.identity, "Relu": tf.nn.relu, "Abs": tf.math.abs, "Square": tf.math.square,
             "Rsqrt": tf.math.rsqrt, "Sigmoid": tf.math.sigmoid, "Softmax": tf.nn.softmax}
    binary = {"Add": tf.math.add, "AddV2": tf.math.add, "Sub": tf.math.subtract, "Mul": tf.math.multiply,
              "Maximum": tf.math.maximum, "Minimum": tf.math.minimum}
    if op in unary:
        return unary[op]
    if op in binary:
        return binary[op]

    def activation(y: Any, alpha: Any) -> Any:
        if attrs["activation"] == "Relu":
            return tf.nn.relu(y)
        if attrs["activation"] == "Prelu":
            return tf.math.maximum(y, 0.0) + alpha * tf.math.minimum(y, 0.0)
        return y

    if op == "Conv":
        (top, bottom), (left, right) = attrs["explicit"]
        conv_op = tf.raw_ops.DepthwiseConv2dNative if attrs["depthwise"] else tf.raw_ops.Conv2D
        conv_attrs = {"strides": [1, *attrs["strides"], 1], "dilations": [1, *attrs["dilations"], 1],
                      "padding": attrs["padding"], "data_format": "NHWC",
                      "explicit_paddings": [0, 0, top, bottom, left, right, 0, 0] if attrs["padding"] == "EXPLICIT"
                      else []}

        def conv(x: Any, w: Any, bias: Any = None, alpha: Any = None) -> Any:
            y = conv_op(input=x, filter=w, **conv_attrs)
            return activation(y if bias is None else tf.nn.bias_add(y, bias), alpha)
        return conv
    if op == "MatMul":
        def matmul(a: Any, b: Any, bias: Any = None, alpha: Any = None) -> Any:
            y = tf.linalg.matmul(a, b, transpose_a=attrs["transpose_a"], transpose_b=attrs["transpose_b"])
            return activation(y if bias is None else tf.nn.bias_add(y, bias), alpha)
        return matmul
    if op == "Pad":
        return lambda x: tf.pad(x, attrs["paddings"])
    if op == "Reshape":
        return lambda x: tf.reshape(x, attrs["shape"])
    if op == "Sum":
        return lambda x: tf.math.reduce_sum(x, axis=attrs["axes"], keepdims=attrs["keep_dims"])
    if op == "Mean":
        return lambda x: tf.math.reduce_mean(x, axis=attrs["axes"], keepdims=attrs["keep_dims"])
    if op == "Squeeze":
        return lambda x: tf.squeeze(x, axis=attrs["axes"] or None)
    raise GraphError(f"node {step.name!r}: no TensorFlow implementation of {op!r}")


class TfGraph:
    """Computes one output node of a graph model with TensorFlow ops, compiled once as a ``tf.function``."""

    def __init__(self, graph: GraphModel, output: str, inputs: Sequence[str], device: str | None = None) -> None:
        tf = import_tensorflow()
        self._tf = tf
        self._device = device
        self.input_names = tuple(inputs)
        self.output_name = output
        steps = plan(graph, output, inputs)
        needed = {i for s in steps for i in s.inputs if graph.nodes[i].op == "Const"}
        with tf.device(device):
            self._constants = {name: tf.constant(graph.weights[name]) for name in needed}
        self._steps = [(s.name, _tf_fn(tf, s), s.inputs) for s in steps]
        signature = [tf.TensorSpec(graph.placeholder_shape(name), tf.float32) for name in inputs]
        self._run = tf.function(self._execute, input_signature=signature)

    def _execute(self, *inputs: Any) -> Any:
        env: dict[str, Any] = {**self._constants, **dict(zip(self.input_names, inputs, strict=True))}
        for name, fn, refs in self._steps:
            env[name] = fn(*(env[r] for r in refs))
        return env[self.output_name]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        with self._tf.device(self._device):
            return np.asarray(self._run(*(np.asarray(x, dtype=np.float32) for x in inputs)))
