"""The adaptive tracker: FaceCure's robust-feature attack on cloaks.

Source: Radiya-Dixit, Hong, Carlini, Tramèr, "Data Poisoning Won't Save You From Facial Recognition", ICLR 2022
(the "robust training" adaptive defence of their FaceCure code). The tracker obtains the cloak (it is public
software), cloaks photos of *public* identities (never the protected users), and fine-tunes its feature extractor
with a classification loss on their clean photos plus the cloaked copies, each labelled with its true identity,
so that cloaked faces land where the clean ones do. It then runs the protection protocol with the adapted
extractor.
Method here: every weight of a copy of a differentiable zoo network is trained with a cosine-softmax head
imprinted from the class means (``recognizers.trackers.train_classifier``); the head is dropped afterwards.
Arguments: ``AdaptiveConfig``. Cost: recorded in ``Adaptation`` (identities, clean/cloaked pairs, seconds).
Example: ``extractor, record = adapt_to_cloak(victim, generator, aligner, photos, sources, identities, seed=0)``,
then ``scenario.evaluate(cloaked, extractor, ...)``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fawkes_eval.align import FaceAligner
from fawkes_eval.types import CloakGenerator, DifferentiableExtractor, ExtractorInfo
from recognizers.trackers import FineTuneConfig, train_classifier
from scenarios.photos import EmbeddingCache, cloak_photos
from scenarios.protection import AlignedFaces


@dataclass(frozen=True)
class AdaptiveConfig:
    finetune: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(epochs=5, lr=1e-4, head_lr=1e-2))


@dataclass(frozen=True)
class Adaptation:
    """What the adaptive tracker saw and spent: report it beside every number measured with its extractor."""

    base: str  # the extractor it started from
    cloak: str  # the cloak it adapted to
    identities: tuple[str, ...]  # the public identities it trained on
    n_pairs: int  # clean/cloaked photo pairs (each pair: one clean and one cloaked training image)
    seconds_cloaking: float
    seconds_training: float
    config: AdaptiveConfig


class AdaptedExtractor:
    """A zoo extractor after robust fine-tuning: same template, input and embedding size; new weights.

    Its ``info.name`` says what it was adapted to, so embedding caches keep it apart from the original.
    """

    def __init__(self, base: ExtractorInfo, module: torch.nn.Module, cloak: str, batch_size: int = 32) -> None:
        self.info = replace(base, name=f"{base.name}+robust[{cloak}]",
                            source=f"{base.source}; fine-tuned by fawkes-eval's adaptive tracker against {cloak}")
        self._module = module.eval()
        self._device = next(module.parameters()).device
        self.batch_size = batch_size

    def torch_module(self) -> torch.nn.Module:
        return self._module

    def embed(self, faces: np.ndarray) -> np.ndarray:
        size = self.info.input_size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f"{self.info.name}: expected faces (N, {size}, {size}, 3), got {faces.shape}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(faces), self.batch_size):
                x = torch.tensor(faces[start: start + self.batch_size], device=self._device).permute(0, 3, 1, 2)
                out.append(self._module(x.float()).cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.info.embedding_dim), np.float32)


def adapt_extractor(
    extractor: DifferentiableExtractor,
    clean_faces: np.ndarray,
    cloaked_faces: np.ndarray,
    labels: np.ndarray,
    cloak: str,
    config: AdaptiveConfig | None = None,
) -> tuple[AdaptedExtractor, float]:
    """Fine-tune a copy of ``extractor`` to classify clean and cloaked faces (uint8 (N, S, S, 3) at its template,
    pair i of both arrays showing the same photo) by ``labels``; returns the adapted extractor and the seconds."""
    config = config or AdaptiveConfig()
    if clean_faces.shape != cloaked_faces.shape or len(labels) != len(clean_faces):
        raise ValueError(f"clean {clean_faces.shape}, cloaked {cloaked_faces.shape} and labels ({len(labels)}) "
                         "must pair up")
    start = time.perf_counter()
    classes, index = np.unique(np.asarray(labels), return_inverse=True)
    module = copy.deepcopy(extractor.torch_module())
    train_classifier(module, np.concatenate([clean_faces, cloaked_faces]), np.tile(index, 2), len(classes),
                     config.finetune)
    return AdaptedExtractor(extractor.info, module, cloak), time.perf_counter() - start


def adapt_to_cloak(
    extractor: DifferentiableExtractor,
    generator: CloakGenerator,
    aligner: FaceAligner,
    photos: list[np.ndarray],
    sources: list[str],
    identities: list[str],
    seed: int,
    config: AdaptiveConfig | None = None,
) -> tuple[AdaptedExtractor, Adaptation]:
    """The whole attack on photos of public identities: cloak them as a user would, align clean and cloaked
    photos as the victim does (a cloaked photo whose face is no longer found takes its original's landmarks),
    and fine-tune on both."""
    config = config or AdaptiveConfig()
    cloaked, seconds_cloaking = cloak_photos(generator, aligner, photos, sources, seed)
    faces = EmbeddingCache(AlignedFaces(extractor.info.template), aligner)
    clean_faces = faces.embed(photos, sources)
    cloaked_faces = faces.embed([c.photo for c in cloaked], sources, photos)
    adapted, seconds_training = adapt_extractor(extractor, clean_faces, cloaked_faces, np.array(identities),
                                                generator.name, config)
    record = Adaptation(extractor.info.name, generator.name, tuple(sorted(set(identities))), len(photos),
                        seconds_cloaking, seconds_training, config)
    return adapted, record
