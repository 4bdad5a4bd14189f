"""Bad input never crashes: each bad file gets an error naming it and the reason; odd-but-valid files load."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fawkes_eval.align import FaceAligner, NoFaceError, PhotoError, load_photo
from fawkes_eval.data import Dataset, load_dataset


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size while its data is a few bytes (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def face_photo(demo_dataset: Dataset) -> Image.Image:
    return Image.open(demo_dataset.records[0].path).convert("RGB")


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not a photo\n", "not a readable image"),
        ("bomb.png", _png_header_claiming(30000, 30000), "decompression bomb"),
        ("big.png", _png_header_claiming(8000, 7500), "8000x7500 pixels, over the 50 MP limit"),
    ],
)
def test_unusable_files_are_named(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PhotoError) as info:
        load_photo(path)
    assert name in str(info.value) and reason in str(info.value)


def test_truncated_jpeg(tmp_path: Path, face_photo: Image.Image) -> None:
    buf = io.BytesIO()
    face_photo.save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(PhotoError, match="cut.jpg: cannot decode"):
        load_photo(path)


def test_odd_formats_load_as_rgb8(tmp_path: Path, face_photo: Image.Image) -> None:
    rgb = np.asarray(face_photo)
    rgba = face_photo.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(tmp_path / "alpha.png")
    Image.fromarray(np.asarray(face_photo.convert("L")).astype(np.uint16) * 257).save(tmp_path / "deep.png")
    face_photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    face_photo.convert("L").save(tmp_path / "grey.jpg")
    face_photo.save(tmp_path / "ünïcødé名.png")
    for path in sorted(tmp_path.iterdir()):
        out = load_photo(path)
        assert out.dtype == np.uint8 and out.shape == rgb.shape, path.name
    deep = load_photo(tmp_path / "deep.png")
    assert np.abs(deep[..., 0].astype(int) - np.asarray(face_photo.convert("L"))).max() <= 1  # rescaled, not clipped


def test_exif_rotation_is_applied(tmp_path: Path, face_photo: Image.Image, aligner: FaceAligner) -> None:
    rotated = face_photo.rotate(90, expand=True)  # stored sideways (turned 90 degrees anticlockwise) ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with the tag that says "turn 90 degrees clockwise to view": upright again
    rotated.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    upright = load_photo(tmp_path / "sideways.jpg")
    assert upright.shape == np.asarray(face_photo).shape
    assert np.abs(upright.astype(int) - np.asarray(face_photo).astype(int)).mean() < 3  # JPEG noise only
    aligner.align(upright, "dlib-150", "sideways.jpg")  # the face is found: orientation handled


def test_tiny_and_prealigned_images_get_hints(face_photo: Image.Image, aligner: FaceAligner) -> None:
    with pytest.raises(NoFaceError, match="only 1x1 pixels"):
        aligner.align(np.zeros((1, 1, 3), np.uint8), "dlib-150", "one.png")
    # a template-sized square with no detectable face: the likely cause is a tight pre-aligned crop
    crop = np.asarray(face_photo)[60:172, 60:172] // 8
    with pytest.raises(NoFaceError, match="pre-aligned face crop; pass --aligned"):
        aligner.align(np.ascontiguousarray(crop), "arcface-112", "crop.png")


def test_symlink_outside_root_is_refused_and_the_rest_loads(tmp_path: Path, demo_dataset: Dataset) -> None:
    root = tmp_path / "root"
    (root / "Alice").mkdir(parents=True)
    good = demo_dataset.records[0].path
    (root / "Alice" / "a.jpg").write_bytes(good.read_bytes())
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(good.read_bytes())
    os.symlink(secret, root / "Alice" / "link.jpg")
    ds = load_dataset(root)
    assert [r.path.name for r in ds.records] == ["a.jpg"]
    assert len(ds.errors) == 1 and "link.jpg" in ds.errors[0].path and "outside the dataset root" in ds.errors[0].reason
