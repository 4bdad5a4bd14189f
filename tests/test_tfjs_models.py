"""The TF.js graph loader and the MobileFace / HSE FaceRes extractors, on the shipped weights and real photos."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fawkes_eval.data import Dataset
from fawkes_eval.types import DifferentiableExtractor
from recognizers.tfjs_graph import GraphError, Step, TfGraph, TorchGraph, fuse, load_graph_model, plan
from recognizers.tfjs_models import HseFaceRes, HseFaceResDeep, MobileFace, _graph, _TfjsExtractor
from recognizers.weights import WEIGHTS_DIR, WeightsError

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
MODELS = [MobileFace, HseFaceRes, HseFaceResDeep]
_cache: dict[tuple[type[_TfjsExtractor], str], _TfjsExtractor] = {}


def model(cls: type[_TfjsExtractor], backend: str = "torch") -> _TfjsExtractor:
    """One instance per class and backend for the whole module: building the TF function is the slow part."""
    if (cls, backend) not in _cache:
        _cache[(cls, backend)] = cls(backend=backend)
    return _cache[(cls, backend)]


def loo_1nn_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest neighbour (cosine) accuracy."""
    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    return float(np.mean(labels[sims.argmax(1)] == labels))


# --- the loader, on small synthetic graphs --------------------------------------------------------------------

def _s(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _node(name: str, op: str, inputs: tuple[str, ...] = (), **attr: object) -> dict[str, object]:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _conv_attr(strides: int, padding: str, fused: tuple[str, ...] = (), explicit: tuple[int, ...] = ()) -> dict:
    attr: dict[str, object] = {
        "strides": {"list": {"i": ["1", str(strides), str(strides), "1"]}}, "padding": {"s": _s(padding)},
        "data_format": {"s": _s("NHWC")}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
        "explicit_paddings": {"list": {"i": [str(v) for v in explicit]}},
    }
    if fused:
        attr["fused_ops"] = {"list": {"s": [_s(f) for f in fused]}}
    return attr


def _write_graph(path: Path, nodes: list[dict], weights: dict[str, np.ndarray], quantize: dict[str, str]) -> Path:
    """A graph-model JSON plus one shard; ``quantize`` maps weight names to uint8 / uint16 / float16."""
    specs, chunks = [], []
    for name, value in weights.items():
        spec: dict[str, object] = {"name": name, "shape": list(value.shape), "dtype": str(value.dtype)}
        kind = quantize.get(name)
        if kind == "float16":
            chunks.append(value.astype("<f2").tobytes())
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        elif kind:
            top = 255 if kind == "uint8" else 65535
            lo, scale = float(value.min()), float(value.max() - value.min()) / top
            chunks.append(np.round((value - lo) / scale).astype("u1" if kind == "uint8" else "<u2").tobytes())
            spec["quantization"] = {"dtype": kind, "min": lo, "scale": scale, "original_dtype": "float32"}
        else:
            chunks.append(value.tobytes())
        specs.append(spec)
        const = {"value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {}}}}
        nodes = [_node(name, "Const", **const), *nodes]
    path.with_suffix(".bin").write_bytes(b"".join(chunks))
    manifest = [{"paths": [path.with_suffix(".bin").name], "weights": specs}]
    path.write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": nodes},
                                "weightsManifest": manifest}))
    return path


def _synthetic(tmp_path: Path) -> Path:
    """Every op the shipped graphs use, fused convolutions, asymmetric SAME and explicit padding, quantised weights."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    weights = {
        "w1": w(3, 3, 4, 6), "b1": w(6), "a1": np.abs(w(6)) * 0.2, "dw": w(3, 3, 6, 2), "db": w(12),
        "w2": w(2, 2, 12, 8), "dw2": w(3, 3, 8, 1), "k": w(8, 5), "kb": w(5), "k2": w(3, 8),
        "one": np.ones((), np.float32), "zero": np.zeros((), np.float32), "bn_scale": w(8), "bn_shift": w(8),
        "gamma": np.abs(w(8)) * 0.3,
        "pads": np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32), "axes": np.array([1, 2], np.int32),
        "flat": np.array([-1, 5 * 5 * 12], np.int32), "ax1": np.array([1], np.int32),
    }
    mm = {"transpose_a": {"b": False}, "transpose_b": {"b": False}}
    nodes = [
        _node("x", "Placeholder", shape={"shape": {"dim": [{"size": str(d)} for d in (-1, 9, 10, 4)]}}),
        _node("c1", "_FusedConv2D", ("x", "w1", "b1", "a1"), **_conv_attr(2, "SAME", ("BiasAdd", "Prelu"))),
        _node("d1", "FusedDepthwiseConv2dNative", ("c1", "dw", "db"), **_conv_attr(1, "SAME", ("BiasAdd", "Relu"))),
        _node("c2", "Conv2D", ("d1", "w2"), **_conv_attr(1, "EXPLICIT", explicit=(0, 0, 1, 0, 0, 1, 0, 0))),
        _node("bn_mul", "Mul", ("c2", "bn_scale")),
        _node("bn", "AddV2", ("bn_shift", "bn_mul")),
        _node("hi", "Maximum", ("zero", "bn")),
        _node("lo", "Minimum", ("zero", "bn")),
        _node("neg", "Mul", ("gamma", "lo")),
        _node("prelu", "AddV2", ("hi", "neg")),
        _node("p", "Pad", ("prelu", "pads")),
        _node("d2", "DepthwiseConv2dNative", ("p", "dw2"), **_conv_attr(2, "VALID")),
        _node("m", "Mean", ("d2", "axes"), keep_dims={"b": True}),
        _node("sq", "Squeeze", ("m",), squeeze_dims={"list": {"i": ["1", "2"]}}),
        _node("r", "Rsqrt", ("s1",)),
        _node("s1", "AddV2", ("s2", "one")),
        _node("s2", "Square", ("sq",)),
        _node("y0", "Mul", ("ab", "r")),
        _node("ab", "Abs", ("sq",)),
        _node("y", "Sub", ("y0", "mx")),
        _node("mx", "Maximum", ("mn", "one")),
        _node("mn", "Minimum", ("sq", "one")),
        _node("f1", "_FusedMatMul", ("y", "k", "kb"), fused_ops={"list": {"s": [_s("BiasAdd"), _s("Relu")]}}, **mm),
        _node("softmax", "Softmax", ("f1",)),
        _node("f2", "MatMul", ("y", "k2"), transpose_a={"b": False}, transpose_b={"b": True}),
        _node("sigmoid", "Sigmoid", ("f2",)),
        _node("flat_d1", "Reshape", ("d1", "flat")),
        _node("sum", "Sum", ("flat_d1", "ax1"), keep_dims={"b": False}),
        _node("relu", "Relu", ("y",)),
        _node("out", "Identity", ("relu",)),
        _node("odd", "Erf", ("x",)),
    ]
    quantize = {"w1": "uint8", "w2": "uint16", "dw": "float16"}
    return _write_graph(tmp_path / "synthetic.json", nodes, weights, quantize)


def test_weights_are_dequantised(tmp_path: Path) -> None:
    graph = load_graph_model(_synthetic(tmp_path))
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    assert np.abs(graph.weights["w1"] - w1).max() <= (w1.max() - w1.min()) / 255 / 2 + 1e-6  # uint8: q*scale+min
    assert graph.weights["w1"].dtype == np.float32 and graph.weights["pads"].dtype == np.int32
    dw = graph.weights["dw"]
    assert dw.shape == (3, 3, 6, 2) and np.array_equal(dw, dw.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "sum", "out"])
def test_torch_and_tensorflow_executors_agree_on_every_op(tmp_path: Path, output: str) -> None:
    graph = load_graph_model(_synthetic(tmp_path))
    x = np.random.default_rng(1).normal(size=(3, 9, 10, 4)).astype(np.float32)
    with torch.no_grad():
        got = TorchGraph(graph, output, ["x"])(torch.from_numpy(x)).numpy()
    want = TfGraph(graph, output, ["x"])(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_fusion_for_torch_rewrites_what_it_can(tmp_path: Path) -> None:
    graph = load_graph_model(_synthetic(tmp_path))
    steps = {s.name: s for s in fuse(graph, plan(graph, "softmax", ["x"]), "softmax")}
    assert steps["bn"].op == "Conv" and {"scale", "shift"} <= set(steps["bn"].attrs)  # batch norm folded
    assert steps["prelu"].op == "Prelu" and steps["prelu"].inputs == ("bn", "gamma")
    assert steps["d2"].attrs["padding"] == "EXPLICIT" and "p" not in steps  # Pad folded into the conv
    assert steps["y"].op == "Sub" and steps["mx"] == Step("mx", "Clip", ("sq",), {"lo": 1.0, "hi": 1.0,
                                                                                 "in_place": False})


def test_unknown_op_is_named_and_unneeded_nodes_are_skipped(tmp_path: Path) -> None:
    graph = load_graph_model(_synthetic(tmp_path))
    assert "odd" not in {s.name for s in plan(graph, "out", ["x"])}
    assert "c2" not in {s.name for s in plan(graph, "sum", ["x"])}
    with pytest.raises(GraphError, match=r"'odd'.*unsupported op 'Erf'"):
        TorchGraph(graph, "odd", ["x"])


# --- the extractors --------------------------------------------------------------------------------------------

def test_hard_coded_hashes_match_sha256sums() -> None:
    sums = dict(reversed(line.split()) for line in (WEIGHTS_DIR / "SHA256SUMS").read_text().splitlines() if line)
    for cls in MODELS:
        for file, sha in cls.files.items():
            assert sums[file] == sha, file


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_model_info_and_protocol(cls: type[_TfjsExtractor]) -> None:
    extractor = model(cls)
    assert isinstance(extractor, DifferentiableExtractor)
    info = extractor.info
    assert (info.name, info.embedding_dim, info.differentiable, info.backend) == (
        cls.name, cls.embedding_dim, True, "torch")
    assert info.family == ("mobileface" if cls is MobileFace else "hse-faceres")
    assert set(info.weight_sha256) == set(cls.files) and info.license.startswith("MIT")
    hits = _graph.cache_info().hits
    assert cls().torch_module() is not extractor.torch_module()
    assert _graph.cache_info().hits == hits + 1  # a second instance reuses the parsed graph


def test_corrupted_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "human-models").mkdir()
    for file in MobileFace.files:
        shutil.copy(WEIGHTS_DIR / file, tmp_path / file)
    MobileFace(weights_dir=tmp_path)  # an intact copy loads
    blob = bytearray((tmp_path / "human-models/mobileface.bin").read_bytes())
    blob[1000] ^= 0xFF
    (tmp_path / "human-models/mobileface.bin").write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match=r"mobileface\.bin.*does not match"):
        MobileFace(weights_dir=tmp_path)


def test_bad_backend_and_tf_has_no_torch_module() -> None:
    with pytest.raises(ValueError, match="backend"):
        MobileFace(backend="onnx")
    with pytest.raises(RuntimeError, match="backend='torch'"):
        model(MobileFace, "tensorflow").torch_module()


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_separates_identities_on_demo_sample(cls: type[_TfjsExtractor], demo_dataset: Dataset,
                                             aligned: Aligned) -> None:
    faces, labels = aligned(demo_dataset, cls.template)
    embeddings = model(cls).embed(faces)
    assert embeddings.shape == (len(faces), cls.embedding_dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert loo_1nn_accuracy(embeddings, labels) >= 0.9


@pytest.mark.lfw
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_separates_identities_on_lfw_fixture(cls: type[_TfjsExtractor], lfw_fixture: Dataset,
                                             aligned: Aligned) -> None:
    faces, labels = aligned(lfw_fixture, cls.template)
    embeddings = model(cls).embed(faces)
    assert loo_1nn_accuracy(embeddings, labels) >= 0.9
    same = labels[:, None] == labels[None, :]
    sims = embeddings @ embeddings.T
    assert sims[same & ~np.eye(len(labels), dtype=bool)].mean() > sims[~same].mean() + 0.2


@pytest.mark.parametrize("cls", [MobileFace, HseFaceRes], ids=lambda c: c.name)
def test_tensorflow_and_torch_backends_agree(cls: type[_TfjsExtractor], demo_dataset: Dataset,
                                             aligned: Aligned) -> None:
    faces, _ = aligned(demo_dataset, cls.template)
    faces = faces[::10]  # one face per identity
    tf_model = model(cls, "tensorflow")
    assert not tf_model.info.differentiable and tf_model.info.backend == "tensorflow"
    diff = np.abs(model(cls).embed(faces) - tf_model.embed(faces)).max()
    assert diff < 1e-4


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_gradients_reach_the_pixels(cls: type[_TfjsExtractor], demo_dataset: Dataset, aligned: Aligned) -> None:
    faces, _ = aligned(demo_dataset, cls.template)
    extractor = model(cls)
    x = torch.tensor(faces[:1]).permute(0, 3, 1, 2).float().requires_grad_(True)
    out = extractor.torch_module()(x)
    np.testing.assert_allclose(out.detach().numpy(), extractor.embed(faces[:1]), atol=1e-5)
    (out[0] - torch.from_numpy(extractor.embed(faces[1:2])[0])).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
