"""dlib's ResNet-29 face descriptor as a differentiable PyTorch module (a cloak surrogate).

The weights are the @vladmandic/face-api TF.js port of dlib's ``dlib_face_recognition_resnet_model_v1``
(MIT); the network below is written from dlib's own definition (``dnn_face_recognition_ex.cpp``):

    input 150x150 RGB -> conv 7x7/2 (32) -> affine -> relu -> max-pool 3x3/2
    -> 3 x res(32) -> res_down(64) + 3 x res(64) -> res_down(128) + 2 x res(128)
    -> res_down(256) + 2 x res(256) -> res_down(256) -> global average -> fc 256x128 (no bias)

A residual unit is ``relu(conv-affine-relu-conv-affine(x) + shortcut(x))``; a down unit strides its first conv
by 2 and takes a 2x2/2 average pool as the shortcut. dlib adds tensors of different shapes by zero-padding the
smaller one (extra channels, and bottom/right rows and columns), so we do the same. Strided convolutions and
pools have no padding in dlib, which is why sizes go 150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fawkes_eval.types import ExtractorInfo
from recognizers.weights import WEIGHTS_DIR, verified

MANIFEST = "face_recognition_model-weights_manifest.json"
BINARY = "face_recognition_model.bin"
SHA256 = {
    MANIFEST: "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    BINARY: "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
}
# dlib's input_rgb_image: per-channel mean subtracted, then divided by 256 (not 255).
MEAN_RGB = (122.782, 117.001, 104.298)
SCALE = 256.0

# (manifest prefix, stride of the first conv) for every residual unit, input side first; channel counts come
# from the weights.
RESIDUAL_UNITS: tuple[tuple[str, int], ...] = (
    ("conv32_1", 1), ("conv32_2", 1), ("conv32_3", 1),
    ("conv64_down", 2), ("conv64_1", 1), ("conv64_2", 1), ("conv64_3", 1),
    ("conv128_down", 2), ("conv128_1", 1), ("conv128_2", 1),
    ("conv256_down", 2), ("conv256_1", 1), ("conv256_2", 1),
    ("conv256_down_out", 2),
)  # fmt: skip

_DTYPES = {"float32": np.float32, "uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "int32": np.int32}


def read_tfjs_weights(manifest_path: Path, binary_path: Path) -> dict[str, np.ndarray]:
    """Decode a TF.js layers weights manifest with a single shard into float32 arrays by name.

    Weights lie back to back in manifest order; quantized ones are stored as integers q with value
    ``q * scale + min`` (float16 ones are plain casts).
    """
    groups = json.loads(manifest_path.read_text())
    data = binary_path.read_bytes()
    out: dict[str, np.ndarray] = {}
    offset = 0
    for group in groups:
        if group["paths"] != [binary_path.name]:
            raise ValueError(f"{manifest_path}: expected the single shard {binary_path.name}, got {group['paths']}")
        for spec in group["weights"]:
            quant = spec.get("quantization")
            dtype = np.dtype(_DTYPES[quant["dtype"] if quant else spec["dtype"]])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            values = raw.astype(np.float32)
            if quant and quant["dtype"] in ("uint8", "uint16"):
                values = values * np.float32(quant["scale"]) + np.float32(quant["min"])
            out[spec["name"]] = values.reshape(spec["shape"])
    if offset != len(data):
        raise ValueError(f"{binary_path}: manifest describes {offset} bytes, file has {len(data)}")
    return out


def _folded_conv(weights: dict[str, np.ndarray], prefix: str, stride: int) -> nn.Conv2d:
    """conv + bias followed by dlib's affine (per-channel scale and shift), folded into one Conv2d.

    (W*x + b) * s + t == (W*s)*x + (b*s + t): one op instead of three, same function.
    """
    filters = torch.from_numpy(weights[f"{prefix}/conv/filters"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
    bias = torch.from_numpy(weights[f"{prefix}/conv/bias"])
    scale = torch.from_numpy(weights[f"{prefix}/scale/weights"])
    shift = torch.from_numpy(weights[f"{prefix}/scale/biases"])
    out_ch, in_ch, k, _ = filters.shape
    conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=0 if stride > 1 else k // 2)
    with torch.no_grad():
        conv.weight.copy_(filters * scale[:, None, None, None])
        conv.bias.copy_(bias * scale + shift)  # type: ignore[union-attr]
    return conv


def _pad_to(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad channels and bottom/right edges: how dlib's add_prev adds tensors of different shapes."""
    pad = (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1])
    return F.pad(x, pad) if any(pad) else x


class _Residual(nn.Module):
    def __init__(self, weights: dict[str, np.ndarray], prefix: str, stride: int) -> None:
        super().__init__()
        self.down = stride > 1
        self.conv1 = _folded_conv(weights, f"{prefix}/conv1", stride)
        self.conv2 = _folded_conv(weights, f"{prefix}/conv2", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if out.shape != skip.shape:
            c, h, w = (max(a, b) for a, b in zip(out.shape[1:], skip.shape[1:], strict=True))
            out, skip = _pad_to(out, c, h, w), _pad_to(skip, c, h, w)
        return F.relu(out + skip)


class DlibResNet29(nn.Module):
    """float (N, 3, 150, 150) RGB in 0..255 -> (N, 128) descriptors, as dlib computes them (not L2-normalised)."""

    mean: torch.Tensor

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = _folded_conv(weights, "conv32_down", 2)
        self.units = nn.Sequential(*(_Residual(weights, prefix, stride) for prefix, stride in RESIDUAL_UNITS))
        self.fc = nn.Linear(256, 128, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weights["fc"]).t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / SCALE
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.units(x)
        return self.fc(x.mean(dim=(2, 3)))


class DlibResNetTorch:
    """dlib's ResNet-29 face descriptor in PyTorch (differentiable), from the face-api port's weights.

    Same network and function as ``dlib-resnet``: on the same 150x150 dlib chips the two agree to cosine
    0.9994 (worst face) / 0.9996 (mean) on the bundled LFW sample; the port's uint8 weight quantization is the
    difference. Parameters are frozen (``requires_grad`` False): a fine-tuner re-enables them on a copy.
    """

    info = ExtractorInfo(
        name="dlib-resnet-torch",
        family="dlib-resnet",
        input_size=150,
        template="dlib-150",
        preprocessing="RGB 0..255, minus mean (122.782, 117.001, 104.298), / 256 (dlib's input_rgb_image)",
        embedding_dim=128,
        differentiable=True,
        license="MIT (@vladmandic/face-api port of dlib's model)",
        backend="torch",
        weight_sha256=dict(SHA256),
        source="npm @vladmandic/face-api 1.7.15, model/face_recognition_model.*; "
        "network: dlib_face_recognition_resnet_model_v1 (Davis King, public domain)",
    )

    def __init__(self, device: str | None = None, weights_dir: Path | None = None) -> None:
        folder = weights_dir if weights_dir is not None else WEIGHTS_DIR / "face-api"
        manifest = verified(folder / MANIFEST, SHA256[MANIFEST])
        binary = verified(folder / BINARY, SHA256[BINARY])
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal activations make CPU convolutions 5-10x slower
        self._module = DlibResNet29(read_tfjs_weights(manifest, binary)).to(self.device).eval()
        for p in self._module.parameters():
            p.requires_grad_(False)  # a frozen surrogate: gradients flow to the input only

    def torch_module(self) -> nn.Module:
        """The module on ``self.device``: float (N, 3, 150, 150) RGB 0..255 -> (N, 128)."""
        return self._module

    def embed(self, faces: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 (N, 150, 150, 3) RGB dlib chips -> float32 (N, 128)."""
        if faces.ndim != 4 or faces.shape[1:] != (150, 150, 3) or faces.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, 150, 150, 3) dlib-150 chips, got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 128), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(faces), batch_size):
                # torch.tensor copies: callers may pass read-only arrays, which from_numpy warns about.
                batch = torch.tensor(faces[start : start + batch_size], device=self.device)
                out[start : start + len(batch)] = self._module(batch.permute(0, 3, 1, 2).float()).cpu().numpy()
        return out
