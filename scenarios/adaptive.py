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

In a campaign, a victim entry ``{name: dlib-resnet-torch, adapt: facecure, public: ..., epochs: 5, lr: 1e-4}``
(``fawkes_eval.components.VictimAdaptation``) reaches ``adapted_victim``: the cell's own cloak is applied to the
public photos, the victim is fine-tuned on them, and so is a control (the same fine-tune with the cloaked copies
replaced by the clean photos), both cached on disk by content; any scenario then gets the adapted extractor as
its victim, like any other.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from fawkes_eval.align import FaceAligner
from fawkes_eval.cache import ArrayStore, content_digest
from fawkes_eval.components import VictimAdaptation, declared_by
from fawkes_eval.types import AdaptedVictims, CloakGenerator, DifferentiableExtractor, ExtractorInfo, PublicPhotos
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

    def __init__(self, base: ExtractorInfo, module: torch.nn.Module, cloak: str, batch_size: int = 32,
                 name: str | None = None, weights: dict[str, str] | None = None) -> None:
        self.info = replace(base, name=name or f"{base.name}+robust[{cloak}]",
                            source=f"{base.source}; fine-tuned by fawkes-eval's adaptive tracker against {cloak}",
                            weight_sha256={**base.weight_sha256, **(weights or {})})
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
    faces = EmbeddingCache(AlignedFaces.of(extractor), aligner)
    clean_faces = faces.embed(photos, sources)
    cloaked_faces = faces.embed([c.photo for c in cloaked], sources, photos)
    adapted, seconds_training = adapt_extractor(extractor, clean_faces, cloaked_faces, np.array(identities),
                                                generator.name, config)
    record = Adaptation(extractor.info.name, generator.name, tuple(sorted(set(identities))), len(photos),
                        seconds_cloaking, seconds_training, config)
    return adapted, record


# --- the campaign's adaptive victim ------------------------------------------------------------------------------

def _public_split(public: PublicPhotos, options: VictimAdaptation, seed: int) -> tuple[list[int], list[int]]:
    """Training and held-out photo indices: per identity (in a seeded order), at most ``per_identity`` photos, of
    which ``held_out`` are kept out of the fine-tune when the identity has more than that."""
    rng = np.random.default_rng([seed, 13])
    train: list[int] = []
    held: list[int] = []
    for identity in sorted(set(public.identities)):
        idx = sorted((i for i, name in enumerate(public.identities) if name == identity),
                     key=lambda i: public.sources[i])
        idx = [idx[j] for j in rng.permutation(len(idx))]
        if options.per_identity:
            idx = idx[: options.per_identity]
        n_held = options.held_out if len(idx) > options.held_out else 0
        held.extend(idx[:n_held])
        train.extend(idx[n_held:])
    return sorted(train), sorted(held)


def _state_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"param:{k}": v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _module_from(base: DifferentiableExtractor, arrays: dict[str, np.ndarray]) -> torch.nn.Module:
    module = copy.deepcopy(base.torch_module())
    state = {k.removeprefix("param:"): torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("param:")}
    module.load_state_dict(state)
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _one_nn_error(extractor: Any, gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray,
                  query_labels: np.ndarray) -> float:
    if not len(queries):
        return float("nan")
    g = extractor.embed(gallery)
    q = extractor.embed(queries)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return float(np.mean(gallery_labels[np.argmax(q @ g.T, axis=1)] != query_labels))


def adapted_victim(
    extractor: DifferentiableExtractor,
    generator: CloakGenerator,
    aligner: FaceAligner,
    public: PublicPhotos,
    options: VictimAdaptation,
    seed: int,
    *,
    store: ArrayStore | None = None,
    identity: str = "",
) -> AdaptedVictims:
    """FaceCure's adaptive tracker for one cell: cloak the public photos with the cell's ``generator``, fine-tune a
    copy of ``extractor`` on the clean + cloaked training photos (``adapt_extractor``) and a control on the clean
    photos twice (same steps, no cloak), and measure, on the held-out public photos, the 1-NN error of their
    cloaked copies against the clean training photos before and after.

    ``store``: weights are kept there (numpy arrays of the state dicts, read without unpickling) under a key of
    ``identity`` (the base weights and the cloak's name, parameters and surrogate weights, as the caller states
    them), the public photos' manifest, the options and the seed; a rerun loads them and neither cloaks nor trains.
    """
    if not extractor.info.differentiable or not hasattr(extractor, "torch_module"):
        raise ValueError(f"{extractor.info.name} is not differentiable: the adaptive tracker fine-tunes its weights")
    train, held = _public_split(public, options, seed)
    if len({public.identities[i] for i in train}) < 2:
        raise ValueError(f"public photos {public.description}: the adaptive tracker needs at least 2 public "
                         f"identities with training photos, got {sorted({public.identities[i] for i in train})}")
    config = AdaptiveConfig(FineTuneConfig(epochs=options.epochs, lr=options.lr, head_lr=options.head_lr,
                                           batch_size=options.batch_size, seed=seed))
    chosen = json.dumps({"train": [public.sources[i] for i in train], "held_out": [public.sources[i] for i in held],
                         "public": public.description, "options": asdict(options), "seed": seed},
                        sort_keys=True, default=str)
    base_id = json.dumps(sorted(extractor.info.weight_sha256.items()))
    keys = {"adapted": content_digest("facecure", base_id, identity, chosen),
            "control": content_digest("facecure-control", base_id, chosen)}
    cached = {kind: store.get(key) if store is not None else None for kind, key in keys.items()}
    labels = np.array([public.identities[i] for i in train])
    held_labels = np.array([public.identities[i] for i in held])
    cache_hit = all(hit is not None for hit in cached.values())
    if not cache_hit:
        photos = [public.photos[i] for i in train + held]
        sources = [public.sources[i] for i in train + held]
        users = [public.identities[i] for i in train + held] if declared_by(generator).get("per_user") else None
        cloaked, seconds_cloaking = cloak_photos(generator, aligner, photos, sources, seed, users)
        faces = EmbeddingCache(AlignedFaces.of(extractor), aligner)
        clean_faces = faces.embed(photos, sources)
        cloaked_faces = faces.embed([c.photo for c in cloaked], sources, photos)
        n = len(train)
        # the control's weights do not depend on the cloak: one per (victim, public photos, options, seed)
        control_arrays = cached["control"]
        if control_arrays is None:
            model, seconds = adapt_extractor(extractor, clean_faces[:n], clean_faces[:n], labels, "none", config)
            control_arrays = {**_state_arrays(model.torch_module()), "meta:seconds": np.array(seconds)}
            if store is not None:
                store.put(keys["control"], control_arrays)
            cached["control"] = control_arrays
        if cached["adapted"] is None:
            model, seconds = adapt_extractor(extractor, clean_faces[:n], cloaked_faces[:n], labels, generator.name,
                                             config)
            control = AdaptedExtractor(extractor.info, _module_from(extractor, control_arrays), "none")
            errors = [_one_nn_error(m, clean_faces[:n], labels, cloaked_faces[n:], held_labels)
                      for m in (extractor, model, control)]
            adapted_arrays = {**_state_arrays(model.torch_module()), "meta:seconds": np.array(seconds),
                              "meta:seconds_cloaking": np.array(seconds_cloaking),
                              "meta:held_out_1nn_error": np.array(errors)}
            if store is not None:
                store.put(keys["adapted"], adapted_arrays)
            cached["adapted"] = adapted_arrays
    models = {}
    for kind, arrays in cached.items():
        assert arrays is not None
        params = sorted(k for k in arrays if k.startswith("param:"))
        digest = content_digest(*params, *(np.asarray(arrays[k]) for k in params))
        models[kind] = AdaptedExtractor(
            extractor.info, _module_from(extractor, arrays), generator.name if kind == "adapted" else "none (control)",
            name=f"{extractor.info.name}+facecure{f'[{generator.name}]' if kind == 'adapted' else '-control'}"
                 f"@{keys[kind][:12]}",
            weights={f"facecure-{kind}": digest})
    adapted_meta, control_meta = cached["adapted"], cached["control"]
    assert adapted_meta is not None and control_meta is not None
    record = {
        "method": "facecure", "base": extractor.info.name, "cloak": generator.name, "public": public.description,
        "identities": sorted(set(labels.tolist())), "n_pairs": len(train), "n_held_out": len(held),
        "epochs": options.epochs, "lr": options.lr, "head_lr": options.head_lr, "batch_size": options.batch_size,
        "per_identity": options.per_identity, "seed": seed,
        "seconds_cloaking": float(adapted_meta["meta:seconds_cloaking"]),
        "seconds_training": float(adapted_meta["meta:seconds"]), "seconds_control": float(control_meta["meta:seconds"]),
        "cache_hit": cache_hit, "cache_key": keys["adapted"], "control_cache_key": keys["control"],
        # 1-NN error of the held-out public photos' cloaked copies; gallery: the clean training photos
        # (None without held-out photos)
        "held_out_1nn_error": dict(zip(("unadapted", "adapted", "control"),
                                       (float(e) if np.isfinite(e) else None
                                        for e in adapted_meta["meta:held_out_1nn_error"]), strict=True)),
        "adapted_sha256": models["adapted"].info.weight_sha256["facecure-adapted"],
        "control_sha256": models["control"].info.weight_sha256["facecure-control"],
    }
    return AdaptedVictims(models["adapted"], models["control"], record)
