"""Every registered cloak generator on the same LFW faces: distortion, feature distance, seconds per image.

    .venv/bin/python -m benchmarks.cloak_generators --lfw ../shared/data/lfw --faces 20 --max-steps 20

Faces: the first image of each of the first ``--faces`` identities of ``subsets/ge20_cap50.txt``. Each generator
cloaks their dlib-150 chips through ``dlib-resnet-torch`` (LowKey also as an ArcFace ensemble); the change is
warped back into the photo and rounded to 8 bits, as in the protection protocol. Reported per generator: mean
DSSIM and PSNR on the crop the generator produced; the relative feature distance ||f(x') - f(x)|| / ||f(x)|| on
the surrogate(s) (float crop) and on a model the generator did not use, re-detected and re-aligned on the cloaked
8-bit photo; seconds per image of the generator's own call. Fawkes v0.3 and the ART baseline choose targets per
identity from LFW identities outside the evaluated ones. ``--max-steps`` caps every optimiser's step count (the
rows say where it bit). Writes a Markdown table (stdout and ``--out``) and the raw rows as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fawkes_eval.align import TEMPLATES, FaceAligner, default_cache_dir, load_photo, warp_crop_to_photo
from fawkes_eval.components import build_generator, declared_by
from fawkes_eval.perceptual import image_metrics
from fawkes_eval.registry import CLOAKS, EXTRACTORS
from fawkes_eval.rooms import load_rooms


def _capped(generator: Any, max_steps: int) -> tuple[Any, str]:
    """The generator with its step count capped; returns it and a note of what was changed."""
    config = getattr(generator, "config", None)
    for field in ("steps", "max_iter"):
        if config is not None and hasattr(config, field) and getattr(config, field) > max_steps:
            note = f"{field} {getattr(config, field)} -> {max_steps}"
            generator.config = dataclasses.replace(config, **{field: max_steps})
            if hasattr(generator, "_attack"):
                generator._attack = None  # ART's attack object is built from the config on first use
            return generator, note
    return generator, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    parser.add_argument("--faces", type=int, default=20)
    parser.add_argument("--pool-identities", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated specs (default: every registered generator)")
    parser.add_argument("--out", type=Path, default=Path("fawkes-eval-out/cloak_generators"))
    args = parser.parse_args()
    load_rooms()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    ge20 = (args.lfw / "subsets" / "ge20_cap50.txt").read_text().split()
    firsts: dict[str, str] = {}
    for rel in ge20:
        firsts.setdefault(rel.split("/")[0], rel)
    chosen = list(firsts.values())[: args.faces]
    evaluated = {rel.split("/")[0] for rel in chosen}
    pool_lines: dict[str, list[str]] = {}
    for rel in (args.lfw / "subsets" / "ge10_cap50.txt").read_text().split():
        name = rel.split("/")[0]
        if name not in evaluated and len(pool_lines) <= args.pool_identities:
            pool_lines.setdefault(name, [])
            if len(pool_lines[name]) < 3:
                pool_lines[name].append(rel)
    pool_subset = args.out / "pool_subset.txt"
    pool_subset.write_text("\n".join(r for rels in list(pool_lines.values())[: args.pool_identities] for r in rels))

    aligner = FaceAligner(cache_dir=default_cache_dir())
    photos = [load_photo(args.lfw / "images" / rel) for rel in chosen]
    users = [rel.split("/")[0] for rel in chosen]
    dlib_faces = [aligner.align(p, "dlib-150", rel) for p, rel in zip(photos, chosen, strict=True)]
    dlib_torch = EXTRACTORS.create("dlib-resnet-torch")
    mobileface = EXTRACTORS.create("mobileface")
    ensemble = [mobileface, EXTRACTORS.create("hse-faceres")]

    from attacks.surrogates import SurrogateSet

    # targeted cloaks draw their targets from LFW identities outside the benchmark's users
    pool_options = {"pool_root": str(args.lfw / "images"), "pool_subset": str(pool_subset)}

    def unseen_distance(model: Any, cloaked_photos: list[np.ndarray]) -> float:
        template = model.info.template
        clean = model.embed(np.stack([aligner.align(p, template, "clean").crop for p in photos]))
        moved = model.embed(np.stack([aligner.align(p, template, "cloaked").crop for p in cloaked_photos]))
        return float(np.mean(np.linalg.norm(moved - clean, axis=1) / np.linalg.norm(clean, axis=1)))

    runs: list[tuple[str, list[Any], Any]] = []
    specs = args.only.split(",") if args.only else [s for s in CLOAKS.names() if s != "external"] + ["external"]
    for spec in specs:
        runs.append((spec, [dlib_torch], mobileface))
        if spec == "lowkey":
            runs.append((spec, ensemble, dlib_torch))
    rows: list[dict[str, Any]] = []
    external_source: tuple[list[np.ndarray], str] | None = None
    for spec, surrogates, unseen in runs:
        template = max((s.info.template for s in surrogates), key=lambda t: TEMPLATES[t].size)
        aligned = dlib_faces if template == "dlib-150" else [
            aligner.align(p, template, rel) for p, rel in zip(photos, chosen, strict=True)]
        faces = np.stack([f.crop for f in aligned])
        note = ""
        if spec.startswith("external"):
            if external_source is None:
                continue
            clean_dir, cloaked_dir = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
            for i, (photo, cloaked) in enumerate(zip(photos, external_source[0], strict=True)):
                Image.fromarray(photo).save(clean_dir / f"{i:02d}.png")
                Image.fromarray(cloaked).save(cloaked_dir / f"{i:02d}.png")
            generator = build_generator(spec, {"clean_dir": str(clean_dir), "cloaked_dir": str(cloaked_dir),
                                               "tool": f"{external_source[1]} via PNG files"},
                                        template=template, aligner=aligner)
            note = f"files written by {external_source[1]}"
        else:
            options = pool_options if CLOAKS.declared(spec).get("per_user") else {}
            generator, note = _capped(build_generator(spec, options, surrogates=surrogates, template=template),
                                      args.max_steps)
        call_kwargs = {"users": users} if declared_by(generator).get("per_user") else {}
        out = generator.cloak(faces, seed=args.seed, **call_kwargs)
        metrics = [image_metrics(c, o) for c, o in zip(faces, out.faces, strict=True)]
        cloaked_photos = [
            np.clip(np.rint(p.astype(np.float32) + warp_crop_to_photo(o - f.crop.astype(np.float32), f.matrix, p.shape)),
                    0, 255).astype(np.uint8)
            for p, f, o in zip(photos, aligned, out.faces, strict=True)
        ]
        if spec == "fawkes-v1.0:low":
            external_source = (cloaked_photos, spec)
        surrogate_set = SurrogateSet(surrogates, torch.device("cpu"), "benchmark")
        row = {
            "generator": spec, "surrogates": "+".join(s.info.name for s in surrogates), "note": note,
            "dssim": float(np.mean([m["dssim"] for m in metrics])), "psnr": float(np.mean([m["psnr"] for m in metrics])),
            "linf": float(np.max([m["linf"] for m in metrics])),
            "surrogate_distance": [float(v) for v in surrogate_set.feature_distance(faces, out.faces).mean(axis=0)],
            "unseen_model": unseen.info.name, "unseen_distance": unseen_distance(unseen, cloaked_photos),
            "seconds_per_image": out.seconds / len(faces),
            "targets": [dataclasses.asdict(t)["target"] for t in getattr(generator, "last_targets", [])],
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)

    header = ("| generator | surrogates | mean DSSIM | mean PSNR (dB) | max L-inf | feature distance, surrogate(s) | "
              "feature distance, unseen model | s / image | note |\n|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for r in rows:
        surrogate = " / ".join(f"{v:.3f}" for v in r["surrogate_distance"])
        lines.append(f"| `{r['generator']}` | {r['surrogates']} | {r['dssim']:.4f} | {r['psnr']:.1f} | {r['linf']:.1f} | "
                     f"{surrogate} | {r['unseen_distance']:.3f} ({r['unseen_model']}) | {r['seconds_per_image']:.2f} | "
                     f"{r['note']} |")
    machine = (f"{len(chosen)} LFW faces (first image of the first {len(chosen)} identities of ge20_cap50), seed "
               f"{args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()} CPU; "
               f"steps capped at {args.max_steps}")
    table = "\n".join(lines) + f"\n\n{machine}\n"
    print(table)
    (args.out / "table.md").write_text(table)
    (args.out / "rows.json").write_text(json.dumps({"rows": rows, "measured_on": machine}, indent=1))


if __name__ == "__main__":
    main()
