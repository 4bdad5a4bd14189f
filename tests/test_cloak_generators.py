"""Every registered cloak generator on real LFW crops through real surrogates; targets, ensembles, full photos,
external pairs, the ``cloak`` verb. Optimisers run a few steps here (their presets stay as registered)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from attacks.art_baseline import ArtFeatureAdversariesConfig
from attacks.external import ExternalCloak, pair_files
from attacks.fawkes_v03 import FAWKES_V03_MODES, FawkesV03, FawkesV03Config, TargetPool, choose_targets
from attacks.fawkes_v1 import FAWKES_V1_EARLY_MODES, FAWKES_V1_MODES
from attacks.full_photo import (
    REPORT_CSV,
    REPORT_JSON,
    FullPhotoConfig,
    cloak_folder,
    summarise,
    to_stored_orientation,
    write_reports,
)
from attacks.lowkey import LowKey, LowKeyConfig
from attacks.readback import DEFAULT_MIN_CHANGE
from attacks.surrogates import SurrogateSet
from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.cli import main
from fawkes_eval.data import Dataset
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.registry import CLOAKS, EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import CloakGenerator, DifferentiableExtractor
from scenarios.photos import cloak_photos

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
STEPS = 2
USER = "Colin_Powell"
MULTI_FACE_PHOTO = "Colin_Powell/Colin_Powell_0034.jpg"  # two faces, both fully inside the photo
PIXEL_TOL = 1e-3

load_rooms()


@pytest.fixture(scope="module")
def surrogate() -> DifferentiableExtractor:
    model = EXTRACTORS.create("dlib-resnet-torch")
    assert isinstance(model, DifferentiableExtractor)
    return model


@pytest.fixture(scope="module")
def chips(lfw_fixture: Dataset, aligned: Aligned) -> tuple[np.ndarray, np.ndarray]:
    return aligned(lfw_fixture, "dlib-150")


@pytest.fixture(scope="module")
def user_faces(chips: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    faces, labels = chips
    return faces[np.flatnonzero(labels == USER)[:2]]


def _pool(chips: tuple[np.ndarray, np.ndarray], per_identity: int) -> TargetPool:
    faces, labels = chips
    keep = np.concatenate([np.flatnonzero(labels == name)[:per_identity] for name in np.unique(labels)])
    return TargetPool(faces[keep], tuple(labels[keep]), "dlib-150", f"lfw fixture_8x6, {per_identity} per identity")


@pytest.fixture(scope="module")
def pool(chips: tuple[np.ndarray, np.ndarray]) -> TargetPool:
    """Two faces of every fixture identity, the user's own included: exclusion must do its job."""
    return _pool(chips, 2)


@pytest.fixture(scope="module")
def small_pool(chips: tuple[np.ndarray, np.ndarray]) -> TargetPool:
    """One face per fixture identity (the user's first crop among them): cheap to embed for every generator."""
    return _pool(chips, 1)


@pytest.fixture(scope="module")
def external_dirs(lfw_root: Path, lfw_fixture: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The user's first two photos as clean files and seeded noisy PNG copies as the 'tool's' output."""
    clean_dir, cloaked_dir = tmp_path_factory.mktemp("ext-clean"), tmp_path_factory.mktemp("ext-cloaked")
    rng = np.random.default_rng(0)
    for record in [r for r in lfw_fixture.records if r.identity == USER][:2]:
        shutil.copy(record.path, clean_dir / record.path.name)
        photo = load_photo(record.path).astype(np.int16)
        noisy = np.clip(photo + rng.integers(-4, 5, photo.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(cloaked_dir / f"{record.path.stem}.png")
    return clean_dir, cloaked_dir


def _short_kwargs(spec: str, pool: TargetPool, external_dirs: tuple[Path, Path], aligner: FaceAligner) -> dict[str, Any]:
    """Keyword arguments that make each registered generator cheap here; a new generator must be added."""
    base, _, mode = spec.partition(":")
    if base == "fawkes-v1.0":
        return {"config": dataclasses.replace(FAWKES_V1_MODES[mode], steps=STEPS)}
    if base == "fawkes-v1.0-early":
        return {"config": dataclasses.replace(FAWKES_V1_EARLY_MODES[mode], steps=STEPS)}
    if base == "fawkes-v0.3":
        return {"config": dataclasses.replace(FAWKES_V03_MODES[mode], steps=STEPS), "pool": pool}
    if base == "lowkey":
        return {"config": LowKeyConfig(steps=STEPS)}
    if base == "art-feature-adversaries":
        return {"config": ArtFeatureAdversariesConfig(max_iter=STEPS), "pool": pool}
    if base == "external":
        return {"clean_dir": str(external_dirs[0]), "cloaked_dir": str(external_dirs[1]), "aligner": aligner}
    if base in ("noise", "none"):
        return {}
    raise AssertionError(f"{spec}: add a cheap configuration for this generator to _short_kwargs")


def _build(spec: str, surrogate: DifferentiableExtractor, **kwargs: Any) -> CloakGenerator:
    """What the generator declared it requires: surrogates, or (controls) the surrogate's template."""
    from fawkes_eval.components import uses_surrogates

    target = {"surrogates": [surrogate]} if uses_surrogates(spec) else {"template": surrogate.info.template}
    return CLOAKS.create(spec, **target, **kwargs)


@pytest.mark.parametrize("spec", CLOAKS.names())
def test_every_generator_runs_within_budget(
    spec: str, surrogate: DifferentiableExtractor, user_faces: np.ndarray, small_pool: TargetPool,
    external_dirs: tuple[Path, Path], aligner: FaceAligner,
) -> None:  # fmt: skip
    gen = _build(spec, surrogate, **_short_kwargs(spec, small_pool, external_dirs, aligner))
    assert gen.name == spec and gen.template == "dlib-150"
    out = gen.cloak(user_faces, seed=0)
    assert out.faces.dtype == np.float32 and out.faces.shape == user_faces.shape
    assert out.faces.min() >= 0.0 and out.faces.max() <= 255.0
    measured = [image_metrics(c, f)["dssim"] for c, f in zip(user_faces, out.faces, strict=True)]
    np.testing.assert_allclose(out.dssim, measured, rtol=1e-3, atol=1e-6)
    params = gen.params()
    linf = np.abs(out.faces - user_faces.astype(np.float32)).max()
    if "th" in params or "target_dssim" in params:
        th = float(params.get("th", params.get("target_dssim")))  # type: ignore[arg-type]
        assert np.all(out.dssim <= 1.1 * th), (out.dssim, th)
    elif "eps" in params or "delta" in params:
        budget = float(params.get("eps", params.get("delta")))  # type: ignore[arg-type]
        assert 0.0 < linf <= budget + PIXEL_TOL
    elif spec == "none":  # the clean baseline changes nothing
        assert linf == 0.0 and np.all(out.dssim == 0.0)
    else:  # external: whatever the tool did, read back where the face is
        assert spec == "external" and 0.0 < linf <= 4.0 + 1.0  # the fixture's tool adds +-4, bilinear resampling


@pytest.mark.parametrize("spec", ["fawkes-v0.3:min", "lowkey"])
def test_same_seed_same_bytes(spec: str, surrogate: DifferentiableExtractor, user_faces: np.ndarray,
                              small_pool: TargetPool, external_dirs: tuple[Path, Path], aligner: FaceAligner) -> None:
    gen = _build(spec, surrogate, **_short_kwargs(spec, small_pool, external_dirs, aligner))
    first, second = gen.cloak(user_faces, seed=3), gen.cloak(user_faces, seed=3)
    assert first.faces.tobytes() == second.faces.tobytes() and first.dssim.tobytes() == second.dssim.tobytes()


def test_registered_presets_are_the_reference_parameters(surrogate: DifferentiableExtractor) -> None:
    expected = {"fawkes-v1.0-early:low": (0.005, 25, 25.0), "fawkes-v1.0-early:mid": (0.01, 50, 20.0),
                "fawkes-v1.0-early:high": (0.015, 100, 15.0), "fawkes-v0.3:min": (0.002, 20, 40.0),
                "fawkes-v0.3:low": (0.003, 50, 35.0), "fawkes-v0.3:mid": (0.005, 200, 20.0),
                "fawkes-v0.3:high": (0.008, 500, 10.0), "fawkes-v0.3:ultra": (0.01, 1000, 8.0)}  # fmt: skip
    for spec, (th, steps, lr) in expected.items():
        params = _build(spec, surrogate).params()
        assert (params["th"], params["steps"], params["lr"], params["preset"]) == (th, steps, lr, True), spec
    lowkey = _build("lowkey", surrogate).params()
    assert (lowkey["eps"], lowkey["steps"], lowkey["smoothing_kernel"], lowkey["smoothing_sigma"]) == (12.75, 50, 7, 3.0)
    assert lowkey["perceptual_used"] == "ssim"  # no LPIPS weights here, and none are downloaded


def test_v03_target_is_never_the_user(surrogate: DifferentiableExtractor, user_faces: np.ndarray,
                                      chips: tuple[np.ndarray, np.ndarray], pool: TargetPool) -> None:
    sset = SurrogateSet([surrogate], torch.device("cpu"), "test")
    to_tensor = lambda f: torch.from_numpy(f.astype(np.float32)).permute(0, 3, 1, 2)  # noqa: E731
    clean = sset.embed_all(to_tensor(user_faces), 8)
    pool_emb = sset.embed_all(to_tensor(pool.faces), 8)
    # The pool holds the user's very crops: excluded by content, whatever the seed.
    for seed in range(20):
        (choice, rows), = choose_targets(user_faces, clean, pool, pool_emb, None, seed, n_furthest=20)
        assert choice.target != USER and USER not in choice.candidates and rows == [0, 1]
    # Other photos of the user, no shared crop: excluded by the label the caller gives.
    faces, labels = chips
    others = np.flatnonzero(labels == USER)[2:4]
    strangers = TargetPool(np.concatenate([faces[others], pool.faces[pool.faces.shape[0] // 2:]]),
                           (USER, USER, *pool.identities[pool.faces.shape[0] // 2:]), "dlib-150", "others")
    stranger_emb = sset.embed_all(to_tensor(strangers.faces), 8)
    for seed in range(20):
        (choice, _), = choose_targets(user_faces, clean, strangers, stranger_emb, [USER, USER], seed, n_furthest=20)
        assert choice.target != USER
    # The furthest identity by minimum embedding distance, computed here independently.
    (choice, _), = choose_targets(user_faces, clean, pool, pool_emb, None, 0, n_furthest=1)
    dist = torch.cdist(pool_emb[0], clean[0]).amin(dim=1).numpy()
    names = [n for n in sorted(set(pool.identities)) if n != USER]
    furthest = max(names, key=lambda n: dist[np.array(pool.identities) == n].min())
    assert choice.target == furthest


def test_v03_records_target_and_moves_towards_it(surrogate: DifferentiableExtractor, user_faces: np.ndarray,
                                                 small_pool: TargetPool) -> None:
    pool = small_pool
    config = FawkesV03Config(th=0.01, steps=3, lr=10.0)
    gen = CLOAKS.create("fawkes-v0.3:mid", surrogates=[surrogate], config=config, pool=pool)
    assert isinstance(gen, FawkesV03)
    out = gen.cloak(user_faces, seed=1, users=[USER, USER])
    (choice,) = gen.last_targets
    assert choice.user == USER and choice.target != USER
    target_faces = pool.faces[[i for i, n in enumerate(pool.identities) if n == choice.target]]
    centre = surrogate.embed(target_faces).mean(axis=0)
    before = np.linalg.norm(surrogate.embed(user_faces) - centre, axis=1)
    after = np.linalg.norm(surrogate.embed(np.rint(out.faces).astype(np.uint8)) - centre, axis=1)
    assert np.all(after < before), (before, after)


@pytest.mark.slow
def test_lowkey_ensemble_distance_grows_on_every_surrogate(lfw_fixture: Dataset, aligned: Aligned) -> None:
    models = [EXTRACTORS.create("mobileface"), EXTRACTORS.create("hse-faceres")]
    faces = aligned(lfw_fixture, "arcface-224")[0][:1]
    few = LowKey(models, config=LowKeyConfig(steps=1))  # type: ignore[arg-type]
    more = LowKey(models, config=LowKeyConfig(steps=3))  # type: ignore[arg-type]
    assert few.template == "arcface-224"
    d_few = few.feature_distance(faces, few.cloak(faces, seed=0).faces).mean(axis=0)
    d_more = more.feature_distance(faces, more.cloak(faces, seed=0).faces).mean(axis=0)
    assert d_few.shape == (2,) and np.all(d_few > 0.0) and np.all(d_more > d_few), (d_few, d_more)


def test_surrogates_of_another_geometry_refused(surrogate: DifferentiableExtractor) -> None:
    with pytest.raises(ValueError, match="one alignment geometry"):
        LowKey([surrogate, EXTRACTORS.create("mobileface")])  # type: ignore[list-item]


# --- full photos ----------------------------------------------------------------------------------------------

def _photo_inputs(lfw_root: Path, folder: Path) -> None:
    """The multi-face photo as PNG, as a JPEG stored rotated with EXIF orientation 6, as grayscale; and a photo
    with no face (a flat patch of the photo's own background colour)."""
    original = Image.open(lfw_root / "images" / MULTI_FACE_PHOTO).convert("RGB")
    original.save(folder / "two_faces.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers rotate the stored pixels 90 degrees clockwise
    original.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", quality=90, exif=exif.tobytes())
    original.convert("L").save(folder / "gray.png")
    corner = np.asarray(original)[:20, :20].reshape(-1, 3).mean(axis=0).astype(np.uint8)
    Image.new("RGB", (120, 90), tuple(int(v) for v in corner)).save(folder / "no_face.png")


@pytest.fixture(scope="module")
def full_photo_run(lfw_root: Path, surrogate: DifferentiableExtractor, aligner: FaceAligner,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, list[Any]]:
    src = tmp_path_factory.mktemp("photos")
    _photo_inputs(lfw_root, src)
    gen = _build("fawkes-v1.0:low", surrogate, config=dataclasses.replace(FAWKES_V1_MODES["low"], steps=STEPS))
    outs = [tmp_path_factory.mktemp("cloaked-a"), tmp_path_factory.mktemp("cloaked-b")]
    results = [cloak_folder(gen, src, out, FullPhotoConfig(), aligner, seed=5, checkers=[surrogate]) for out in outs]
    write_reports(results[0], outs[0], {"generator": gen.name, "params": gen.params(), "seed": 5})
    return src, outs[0], outs[1], results[0]


def test_full_photo_changes_only_face_regions(full_photo_run: tuple[Path, Path, Path, list[Any]],
                                              aligner: FaceAligner) -> None:
    src, out, _, results = full_photo_run
    by_path = {r.path: r for r in results}
    clean = np.asarray(Image.open(src / "two_faces.png"))
    cloaked_img = Image.open(out / "two_faces.png")
    assert cloaked_img.size == (250, 250) and cloaked_img.mode == "RGB"
    cloaked = np.asarray(cloaked_img)
    result = by_path["two_faces.png"]
    assert result.status == "cloaked" and len(result.faces) == len(aligner.detect_faces(clean)) == 2
    inside = np.zeros(clean.shape[:2], bool)
    for face in result.faces:
        left, top, right, bottom = face.box
        inside[top:bottom, left:right] = True
        assert not np.array_equal(clean[top:bottom, left:right], cloaked[top:bottom, left:right])
        assert face.crop["dssim"] <= 1.1 * FAWKES_V1_MODES["low"].th
    assert np.array_equal(clean[~inside], cloaked[~inside]), "a pixel outside the faces changed"
    assert 0.0 < result.full["dssim"] < result.faces[0].crop["dssim"] + result.faces[1].crop["dssim"]
    gray = Image.open(out / "gray.png")
    assert gray.mode == "L" and gray.size == (250, 250)
    gray_inside = np.zeros((250, 250), bool)
    for face in by_path["gray.png"].faces:
        gray_inside[face.box[1] : face.box[3], face.box[0] : face.box[2]] = True
    assert np.array_equal(np.asarray(Image.open(src / "gray.png"))[~gray_inside], np.asarray(gray)[~gray_inside])


def test_full_photo_keeps_format_size_and_orientation(full_photo_run: tuple[Path, Path, Path, list[Any]]) -> None:
    src, out, _, results = full_photo_run
    before, after = Image.open(src / "rotated.jpg"), Image.open(out / "rotated.jpg")
    assert after.format == "JPEG" and after.mode == before.mode and after.size == before.size
    assert after.getexif()[0x0112] == 6
    upright_before, upright_after = ImageOps.exif_transpose(before), ImageOps.exif_transpose(after)
    assert upright_after.size == upright_before.size == (250, 250)
    rotated = next(r for r in results if r.path == "rotated.jpg")
    assert rotated.status == "cloaked" and len(rotated.faces) == 2  # found on the upright photo
    # same detections as the upright PNG: the cloak was made upright and turned back
    two_faces = next(r for r in results if r.path == "two_faces.png")
    assert [f.detection for f in rotated.faces] == [f.detection for f in two_faces.faces]


def test_full_photo_lists_photos_without_faces_and_writes_reports(full_photo_run: tuple[Path, Path, Path, list[Any]]) -> None:
    src, out, _, results = full_photo_run
    summary = summarise(results)
    assert summary.no_face == ("no_face.png",) and not (out / "no_face.png").exists()
    assert summary.photos == 4 and summary.cloaked_photos == 3 and summary.faces_cloaked == 6
    rows = (out / REPORT_CSV).read_text().splitlines()
    assert len(rows) == 5 and any(r.startswith("no_face.png,no-face") for r in rows)
    payload = json.loads((out / REPORT_JSON).read_text())
    assert payload["summary"]["faces_cloaked"] == 6 and len(payload["photos"]) == 4


def test_full_photo_checks_every_written_face(full_photo_run: tuple[Path, Path, Path, list[Any]]) -> None:
    _, out, _, results = full_photo_run
    cloaked = [r for r in results if r.status == "cloaked"]
    assert {r.merge for r in cloaked} == {"aligned"}
    changes = [f.check.change["dlib-resnet-torch"] for r in cloaked for f in r.faces if f.check is not None]
    assert len(changes) == 6 and all(0.0 < c < 2.0 for c in changes)  # every face found again and moved
    summary = summarise(results)
    assert summary.faces_checked == 6 and summary.merges == {"aligned": 3}
    assert summary.median_change["dlib-resnet-torch"] == pytest.approx(float(np.median(changes)))
    # two steps of fawkes-v1.0:low barely move a face: every one is flagged, by photo
    assert sum("barely changed after re-alignment" in line for line in summary.barely_changed) == 6
    with (out / REPORT_CSV).open() as f:
        two_faces = next(row for row in csv.DictReader(f) if row["path"] == "two_faces.png")
    assert two_faces["merge"] == "aligned" and two_faces["faces_barely_changed"] == "2"
    photo = next(r for r in cloaked if r.path == "two_faces.png")
    smallest = min(f.check.change["dlib-resnet-torch"] for f in photo.faces if f.check is not None)
    assert float(two_faces["change_min"]) == pytest.approx(smallest)
    payload = json.loads((out / REPORT_JSON).read_text())
    assert payload["summary"]["min_change"] == DEFAULT_MIN_CHANGE
    assert payload["photos"][-1]["faces"][0]["check"]["redetected"] in (True, False)


def test_verb_and_campaign_path_make_the_same_photo(lfw_root: Path, aligner: FaceAligner, tmp_path: Path) -> None:
    """One implementation: the verb's aligned merge of a one-face photo is the campaign path's photo, bit for bit."""
    source = lfw_root / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    photo = load_photo(source)
    assert len(aligner.detect_faces(photo)) == 1
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(source, src / source.name)
    gen = CLOAKS.create("noise:mid", template="dlib-150")
    results = cloak_folder(gen, src, tmp_path / "out", FullPhotoConfig(output_format="png"), aligner, seed=3)
    campaign, _ = cloak_photos(gen, aligner, [photo], [str(source)], seed=3)
    assert results[0].merge == "aligned"
    assert np.array_equal(load_photo(tmp_path / "out" / "Colin_Powell_0001.png"), campaign[0].photo)


def test_square_merge_is_fawkes_v1_and_changes_only_its_boxes(lfw_root: Path, surrogate: DifferentiableExtractor,
                                                               aligner: FaceAligner, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.open(lfw_root / "images" / MULTI_FACE_PHOTO).save(src / "two_faces.png")
    gen = CLOAKS.create("noise:mid", template="dlib-150")
    results = cloak_folder(gen, src, out, FullPhotoConfig(merge="fawkes-square"), aligner, seed=0, checkers=[surrogate])
    clean, cloaked = np.asarray(Image.open(src / "two_faces.png")), np.asarray(Image.open(out / "two_faces.png"))
    assert results[0].merge == "fawkes-square" and len(results[0].faces) == 2
    inside = np.zeros(clean.shape[:2], bool)
    for face in results[0].faces:
        left, top, right, bottom = face.detection
        assert face.box == (left, top, right + 1, bottom + 1)  # the change is cut to the detector's box
        inside[face.box[1] : face.box[3], face.box[0] : face.box[2]] = True
        assert face.check is not None and face.check.change["dlib-resnet-torch"] > 0.0
    assert np.array_equal(clean[~inside], cloaked[~inside])
    assert summarise(results).merges == {"fawkes-square": 1}
    with pytest.raises(ValueError, match=r"FullPhotoConfig\.merge must be one of aligned, fawkes-square"):
        FullPhotoConfig(merge="square")


def test_full_photo_same_seed_same_files(full_photo_run: tuple[Path, Path, Path, list[Any]]) -> None:
    _, first, second, _ = full_photo_run
    for name in ("two_faces.png", "rotated.jpg", "gray.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_aligned_mode_cloaks_whole_crops(user_faces: np.ndarray, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, face in enumerate(user_faces):
        Image.fromarray(face).save(src / f"{i}.png")
    gen = CLOAKS.create("noise:mid", template="dlib-150")
    results = cloak_folder(gen, src, out, FullPhotoConfig(aligned=True))
    for i, (face, r) in enumerate(zip(user_faces, results, strict=True)):
        assert r.status == "cloaked" and r.faces[0].box == (0, 0, 150, 150)
        cloaked = np.asarray(Image.open(out / f"{i}.png"))
        assert abs(image_metrics(face, cloaked)["dssim"] - 0.012) < 0.002


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_orientation_undoes_exif_transpose(orientation: int) -> None:
    stored = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.fromarray(stored)
    img.info["exif"] = exif.tobytes()
    img.getexif()[0x0112] = orientation
    upright = np.asarray(ImageOps.exif_transpose(img))
    assert np.array_equal(to_stored_orientation(upright, orientation), stored)


# --- external ---------------------------------------------------------------------------------------------------

def test_external_pairs_files_and_reports_the_rest(lfw_fixture: Dataset, tmp_path: Path, aligner: FaceAligner,
                                                   external_dirs: tuple[Path, Path]) -> None:
    clean_dir, cloaked_dir = tmp_path / "clean", tmp_path / "cloaked"
    clean_dir.mkdir()
    (cloaked_dir / "sub").mkdir(parents=True)
    records = [r for r in lfw_fixture.records if r.identity == USER][:4]
    for r in records:
        shutil.copy(r.path, clean_dir / r.path.name)
    a, b, c, d = (r.path.stem for r in records)
    shutil.copy(external_dirs[1] / f"{a}.png", cloaked_dir / f"{a}.png")  # same stem, another format
    shutil.copy(external_dirs[1] / f"{b}.png", cloaked_dir / f"{b}_cloaked.png")  # Fawkes' own naming
    Image.open(records[3].path).resize((200, 200)).save(cloaked_dir / f"{d}.jpg")  # resized by the "tool"
    Image.open(records[3].path).save(cloaked_dir / "sub" / "stranger.png")  # nothing to pair with
    report = pair_files(clean_dir, cloaked_dir)
    assert [p.relative for p in report.pairs] == [f"{a}.jpg", f"{b}.jpg"]
    assert report.missing_cloaked == (f"{c}.jpg",)
    assert report.resized == (f"{d}.jpg (250x250 -> 200x200)",)
    assert report.unmatched_cloaked == ("sub/stranger.png",)
    gen = ExternalCloak("dlib-150", clean_dir=str(clean_dir), cloaked_dir=str(cloaked_dir), aligner=aligner)
    assert "1 clean without cloaked" in str(gen.params()["pairing"])
    faces = np.stack([aligner.align(load_photo(r.path), "dlib-150").crop for r in records])
    out = gen.cloak(faces[:2], seed=0)
    assert np.all(out.dssim > 0.0)
    with pytest.raises(ValueError, match="1 of 1 faces are not among the paired clean photos"):
        gen.cloak(faces[2:3], seed=0)
    photo = gen.cloaked_photo_for(load_photo(records[1].path))
    assert np.array_equal(photo, load_photo(cloaked_dir / f"{b}_cloaked.png"))
    accepting = ExternalCloak("dlib-150", clean_dir=str(clean_dir), cloaked_dir=str(cloaked_dir), accept_resized=True)
    assert len(accepting.pairing.pairs) == 3
    with pytest.raises(ValueError, match="external needs clean_dir and cloaked_dir"):
        CLOAKS.create("external", template="dlib-150")


# --- configs and the verb ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("make", "match"),
    [(lambda: FawkesV03Config(th=0.0, steps=1, lr=1.0), r"FawkesV03Config\.th must be"),
     (lambda: FawkesV03Config(th=0.01, steps=1, lr=1.0, n_furthest=0), r"FawkesV03Config\.n_furthest must be"),
     (lambda: LowKeyConfig(smoothing_kernel=6), r"LowKeyConfig\.smoothing_kernel must be an odd"),
     (lambda: LowKeyConfig(perceptual="lpips-vgg"), r"LowKeyConfig\.perceptual must be one of"),
     (lambda: ArtFeatureAdversariesConfig(delta=0.0), r"ArtFeatureAdversariesConfig\.delta must be"),
     (lambda: FullPhotoConfig(output_format="gif"), r"FullPhotoConfig\.output_format must be")],
)  # fmt: skip
def test_configs_reject_bad_values(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_lpips_is_refused_without_local_weights(surrogate: DifferentiableExtractor) -> None:
    with pytest.raises(ValueError, match="never downloads weights"):
        LowKey([surrogate], config=LowKeyConfig(perceptual="lpips"))


def test_cloak_verb_lists_generators_and_cloaks_a_folder(lfw_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloak", "--list"]) == 0
    listed = capsys.readouterr().out
    for spec in CLOAKS.names():
        assert f"{spec}: " in listed
    assert "th=0.005, steps=25" in listed  # fawkes-v1.0-early:low, with its parameters
    src = tmp_path / "photos"
    src.mkdir()
    _photo_inputs(lfw_root, src)
    assert main(["cloak", str(src), str(tmp_path / "out"), "--method", "noise:low", "--format", "png"]) == 0
    printed = capsys.readouterr().out
    assert "[4/4]" in printed and "cloaked 6 face(s) in 3 of 4 photo(s) with noise:low" in printed
    assert "no face found in 1 photo(s): no_face.png" in printed and "s per image on cpu" in printed
    assert (tmp_path / "out" / "rotated.png").exists()
    assert "feature change after re-detection and re-alignment (median over 6 face(s)): dlib-resnet-torch" in printed
    assert main(["cloak", str(src), str(tmp_path / "x"), "--method", "external"]) == 2
    # the same check for cloaks made by any tool: here the verb's own PNGs, paired by relative path
    assert main(["cloak", "--check", str(src), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "pairing: 3 pairs; 1 clean without cloaked: no_face.png" in printed
    assert printed.count("feature change per face: dlib-resnet-torch") == 3
    assert "two_faces.png: DSSIM" in printed and "(median over 6 face(s))" in printed
    assert main(["cloak", str(src), "--check", str(src), str(tmp_path / "out")]) == 2
