"""Countermeasures on real LFW photos: every registered strength, determinism, strength order, bad input; chains
equal their steps applied one after the other; the platform presets do what they document."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from fawkes_eval.align import load_photo
from fawkes_eval.campaign import load_campaign
from fawkes_eval.cli import main
from fawkes_eval.components import CHAIN, ComponentSpec, create_component
from fawkes_eval.data import Dataset
from fawkes_eval.registry import COUNTERMEASURES
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import Countermeasure
from scenarios.countermeasures import STRENGTHS, PlatformUpload, chain

load_rooms()


@pytest.fixture(scope="module")
def photos(demo_dataset: Dataset) -> list[np.ndarray]:
    out = [load_photo(r.path) for r in demo_dataset.records[:3]]
    for p in out:
        p.setflags(write=False)  # a countermeasure must not change its input
    return out


def _mean_change(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("spec", [n for n in COUNTERMEASURES.names() if n != CHAIN])
def test_every_registered_strength_keeps_shape_and_is_deterministic(spec: str, photos: list[np.ndarray]) -> None:
    cm = COUNTERMEASURES.create(spec)
    assert isinstance(cm, Countermeasure)
    assert cm.name == spec
    out = cm.apply(photos, seed=3)
    assert [o.shape for o in out] == [p.shape for p in photos]
    assert all(o.dtype == np.uint8 for o in out)
    assert 0.0 < _mean_change(photos, out) < 40.0  # it does something, and leaves a face
    again = cm.apply(photos, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))


def test_design_strengths_are_registered() -> None:
    names = set(COUNTERMEASURES.names())
    expected = {"jpeg:95", "jpeg:75", "jpeg:50", "jpeg:30", "jpeg:10", "blur:0.5", "blur:1", "blur:2",
                "rescale:0.75", "rescale:0.5", "rescale:0.25", "median:3", "median:5"}
    assert expected <= names
    assert {"gaussian-noise", "bit-depth"} <= {n.split(":")[0] for n in names}


@pytest.mark.parametrize("family", sorted(STRENGTHS))
def test_strongest_changes_more_than_weakest(family: str, photos: list[np.ndarray]) -> None:
    modes = list(STRENGTHS[family])
    weakest, strongest = (COUNTERMEASURES.create(f"{family}:{m}") for m in (modes[0], modes[-1]))
    assert _mean_change(photos, strongest.apply(photos, 0)) > _mean_change(photos, weakest.apply(photos, 0))


def test_gaussian_noise_depends_on_the_seed(photos: list[np.ndarray]) -> None:
    cm = COUNTERMEASURES.create("gaussian-noise:4")
    a, b = cm.apply(photos, seed=0), cm.apply(photos, seed=1)
    assert not np.array_equal(a[0], b[0])
    assert abs(np.std(a[0].astype(float) - photos[0]) - 4.0) < 0.5  # sigma in 0..255 units (a little clipping)


def test_jpeg_at_quality_100_is_nearly_lossless(photos: list[np.ndarray]) -> None:
    out = COUNTERMEASURES.create("jpeg", quality=100).apply(photos, seed=0)
    assert COUNTERMEASURES.create("jpeg", quality=100).name == "jpeg:100"
    assert _mean_change(photos, out) < 1.0


@pytest.mark.parametrize(("family", "kwargs"), [
    ("jpeg", {"quality": 0}), ("jpeg", {"quality": 50.5}), ("blur", {"sigma": 0}), ("rescale", {"factor": 1.5}),
    ("median", {"window": 1}), ("gaussian-noise", {"sigma": -1}), ("bit-depth", {"bits": 8}),
])
def test_bad_strength_is_refused_with_its_name(family: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=family):
        COUNTERMEASURES.create(family, **kwargs)


def test_bad_photo_is_refused() -> None:
    with pytest.raises(ValueError, match=r"blur:1: photo 1 must be uint8"):
        COUNTERMEASURES.create("blur:1").apply([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], 0)


def test_registering_imports_no_art() -> None:
    code = "import fawkes_eval.rooms as r, sys; r.load_rooms(); print('art' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- chains -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [
    ("rescale:0.5", "jpeg:75"),
    ("jpeg:75", "rescale:0.5"),  # the order matters, so it is kept
    ("blur:1", "gaussian-noise:4", "bit-depth:5"),  # a seeded step after another
    ("median:3", "instagram-like"),
])
def test_chain_equals_its_steps_applied_one_after_the_other(steps: tuple[str, ...], photos: list[np.ndarray]) -> None:
    cm = chain(*steps)
    assert isinstance(cm, Countermeasure) and cm.name == ">".join(steps)
    expected = photos
    for step in steps:
        expected = COUNTERMEASURES.create(step).apply(expected, seed=7)
    got = cm.apply(photos, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))  # pixel-exact
    assert all(np.array_equal(a, b) for a, b in zip(cm.apply(photos[1:], 7), got[1:], strict=True))  # per photo


def test_chain_orders_differ(photos: list[np.ndarray]) -> None:
    a = chain("rescale:0.5", "jpeg:75").apply(photos, 0)
    b = chain("jpeg:75", "rescale:0.5").apply(photos, 0)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


CHAIN_CAMPAIGN = """\
study: chains
campaign: chains
datasets:
  - {name: sample, root: "bundled:lfw_sample"}
grid:
  cloaks: [none]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet-torch]
  trackers: [1nn]
  countermeasures:
    - none
    - [rescale:0.5, jpeg:75]
    - [{name: instagram-like, quality: 60}, blur:1]
    - facebook-like
protocol: {countermeasure_side: both}
"""


def test_a_campaign_chain_is_one_countermeasure_with_a_readable_label(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(CHAIN_CAMPAIGN)
    campaign = load_campaign(path)
    labels = [c.label for c in campaign.grid.countermeasures]
    assert labels == ["none", "rescale:0.5>jpeg:75", "instagram-like{quality=60}>blur:1", "facebook-like"]
    assert [c.countermeasure.label for c in campaign.cells()] == labels  # what rows, MLflow and reports show
    built = create_component(COUNTERMEASURES, campaign.grid.countermeasures[2])
    assert built.name == labels[2]
    assert built.steps[0].config.quality == 60  # type: ignore[attr-defined]


def test_validate_refuses_an_unknown_step_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CHAIN_CAMPAIGN.replace("[rescale:0.5, jpeg:75]", "[rescale:0.5,\n       jpg:75]"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:13: grid.countermeasures[1][1]: unknown countermeasure 'jpg'" in err
    nested = tmp_path / "nested.yaml"
    nested.write_text(CHAIN_CAMPAIGN.replace("[rescale:0.5, jpeg:75]", "[rescale:0.5, none]"))
    assert main(["validate", str(nested)]) == 2
    assert f"{nested}:12: grid.countermeasures[1][1]: 'none' cannot be a step of a chain" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(CHAIN_CAMPAIGN)
    assert main(["validate", str(good)]) == 0
    assert "rescale:0.5>jpeg:75" in capsys.readouterr().out


# --- platform presets ---------------------------------------------------------------------------------------------

def _reference_tables(image: Image.Image, quality: int) -> dict[int, list[int]]:
    """The quantization tables libjpeg writes at ``quality`` (4:2:0), read back from a file made here."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    with Image.open(buf) as ref:
        return {k: list(v) for k, v in ref.quantization.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("entry", "long_edge", "quality"), [
    (ComponentSpec("instagram-like"), 1080, 75),
    (ComponentSpec("facebook-like"), 2048, 80),
    (ComponentSpec("twitter-like"), 4096, 85),
    (ComponentSpec("whatsapp-like"), 1600, 70),
    (ComponentSpec.of("instagram-like", {"quality": 50, "long_edge": 640}), 640, 50),
])
def test_preset_writes_the_jpeg_it_documents(entry: ComponentSpec, long_edge: int, quality: int,
                                             demo_dataset: Dataset) -> None:
    """A real photo enlarged past every platform's limit (4800 x 4000 px), with EXIF and an ICC profile."""
    preset = create_component(COUNTERMEASURES, entry)
    assert isinstance(preset, PlatformUpload)
    face = Image.fromarray(load_photo(demo_dataset.records[0].path))
    big = np.asarray(face.resize((4800, 4000), Image.Resampling.BICUBIC))
    data = preset.encode(big)
    with Image.open(io.BytesIO(data)) as written:
        assert written.format == "JPEG" and max(written.size) == long_edge
        assert written.size == (long_edge, round(4000 * long_edge / 4800))
        assert JpegImagePlugin.get_sampling(written) == 2  # 4:2:0 chroma subsampling
        assert not written.getexif() and "icc_profile" not in written.info and "comment" not in written.info
        assert [marker for marker, _ in written.applist if marker != "APP0"] == []  # JFIF header only
        tables = {k: list(v) for k, v in written.quantization.items()}  # type: ignore[attr-defined]
        assert tables == _reference_tables(written.convert("RGB"), quality)
    served = preset.apply([big], seed=0)[0]
    assert served.shape == (round(4000 * long_edge / 4800), long_edge, 3)
    small = np.asarray(face)
    assert preset.apply([small], seed=0)[0].shape == small.shape  # never enlarged


def test_preset_can_write_webp(demo_dataset: Dataset) -> None:
    photo = load_photo(demo_dataset.records[0].path)
    preset = create_component(COUNTERMEASURES, ComponentSpec.of("facebook-like", {"format": "webp", "quality": 40}))
    assert preset.name == "facebook-like{format=webp,quality=40}"
    data = preset.encode(photo)  # type: ignore[attr-defined]
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    finer = create_component(COUNTERMEASURES, ComponentSpec.of("facebook-like", {"format": "webp", "quality": 90}))
    assert len(finer.encode(photo)) > len(data)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="format must be one of jpeg, webp"):
        create_component(COUNTERMEASURES, ComponentSpec.of("facebook-like", {"format": "heic"}))
