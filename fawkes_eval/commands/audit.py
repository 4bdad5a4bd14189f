"""``fawkes-eval audit``: the protection protocol on the user's own identity-folder dataset (``--data``), or the
personal audit of one person's photos against a crowd (``--me``, ``fawkes_eval/personal.py``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fawkes_eval.commands._audit_options import add_audit_options, csv, run_with_overrides

ME_ONLY = ("cloaked", "cloak", "crowd", "face")
DATA_ONLY = ("subset", "cloaks", "protected", "n_protected", "leak_ratio")


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "audit", help="run the protection protocol on your own dataset (--data), or check your own cloaked photos "
                      "(--me)",
        description="--data DIR: the protection protocol on an identity-folder dataset. --me DIR: do my cloaked "
        "photos protect me? DIR holds photos of one person (any names, several faces per photo allowed); their "
        "cloaked copies come from --cloaked DIR2 (matched by file name) or are made now with --cloak. The photos "
        "are split (seeded) into posted (cloaked) and encountered (clean); trackers built on every available zoo "
        "model learn the posted ones among a crowd (--crowd) and are shown the encountered ones. The answer comes "
        "first, one sentence per threat and model, with the clean result beside it. Exit status 0 whatever the "
        "verdict, 2 for bad input. Nothing leaves the machine.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="dataset root: DATA/<identity>/<image>")
    source.add_argument("--me", type=Path, metavar="DIR", help="a folder of photos of you (any names, any sizes)")
    p.add_argument("--subset", type=Path, help="file listing image paths relative to --data, one per line")
    p.add_argument("--name", help="name of this audit (report folder, MLflow parent run; default: audit, or "
                                  "me-audit with --me)")
    p.add_argument("--cloaked", type=Path, metavar="DIR2",
                   help="--me: your cloaked copies, made by any tool, matched to your photos by file name "
                        "(<stem>_cloaked.<ext> allowed, extension free)")
    p.add_argument("--cloak", type=csv, metavar="METHOD",
                   help="--me: cloak your posted photos now with this method (comma-separated for several; default "
                        "without --cloaked: fawkes-v1.0:high, the strongest Fawkes mode shipped)")
    p.add_argument("--crowd", type=Path, help="--me: identity-folder dataset of other people (distractors and "
                                              "training data; default: the bundled LFW sample)")
    p.add_argument("--face", metavar="PHOTO:INDEX",
                   help="--me: which face is you, in one named photo (faces numbered from 0, top to bottom, then left "
                        "to right, as the audit lists them); default: the person most photos share")
    p.add_argument("--show-faces", action="store_true",
                   help="--me: keep example faces in the reports (left out by default: they are your photos)")
    add_audit_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    given = {k for k in (*ME_ONLY, *DATA_ONLY) if getattr(args, k, None) is not None}
    if args.me is None:
        if given & set(ME_ONLY) or args.show_faces:
            print(f"fawkes-eval audit: error: --{', --'.join(sorted(given & set(ME_ONLY)) or ['show-faces'])} "
                  f"only go with --me", file=sys.stderr)
            return 2
        base = {"data": str(args.data), "subset": str(args.subset) if args.subset else None,
                "name": args.name or "audit"}
        return run_with_overrides(args, base)
    wrong = sorted(given & set(DATA_ONLY))
    if wrong:
        print(f"fawkes-eval audit: error: --{', --'.join(w.replace('_', '-') for w in wrong)} only go with --data "
              f"(with --me the person is the one protected, and --cloaked / --cloak give the cloak)", file=sys.stderr)
        return 2
    from fawkes_eval.personal import PersonalError

    try:
        return personal_audit(args)
    except PersonalError as e:
        print(f"fawkes-eval audit: error: {e}", file=sys.stderr)
        return 2


def available_victims(requested: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The victims to run (those requested, or every default zoo network that loads here, plus user-placed
    DeepFace / InsightFace-pack weights) and one line per default left out."""
    from fawkes_eval.personal import DEFAULT_VICTIMS
    from fawkes_eval.registry import EXTRACTORS
    from recognizers.weights import WeightsError

    if requested:
        for name in requested:
            EXTRACTORS.mode_params(name)  # an unknown name: UnknownComponentError, exit 2
        return list(requested), []
    names = list(DEFAULT_VICTIMS) + [n for n in EXTRACTORS.names() if n.split(":")[0] in ("deepface", "insightface")]
    found, missing = [], []
    for name in names:
        try:
            EXTRACTORS.create(name)
            found.append(name)
        except (WeightsError, ImportError) as e:
            if name in DEFAULT_VICTIMS:
                missing.append(f"{name}: not available here ({e})")
    return found, missing


def personal_audit(args: argparse.Namespace) -> int:
    from fawkes_eval import personal
    from fawkes_eval.align import FaceAligner, default_cache_dir
    from fawkes_eval.campaign import CampaignError, check_components
    from fawkes_eval.components import ComponentSpec
    from fawkes_eval.rooms import load_rooms
    from fawkes_eval.runner import DEMO_DATA, quiet_libraries, run_campaign

    start = time.perf_counter()
    load_rooms()
    quiet_libraries()
    say = print
    seeds = args.seeds or (0,)
    if len(seeds) != 1:
        raise personal.PersonalError("--seeds: give one seed with --me (it fixes which photos are posted)")
    seed = seeds[0]
    crowd = args.crowd or DEMO_DATA
    if args.aligned:
        raise personal.PersonalError("--aligned does not go with --me: your photos are ordinary photos, detected")
    personal.photo_files(args.me)  # bad folders fail before any model loads
    for option, folder in (("--cloaked", args.cloaked), ("--crowd", crowd)):
        if folder is not None and not folder.is_dir():
            raise personal.PersonalError(f"{option} {folder}: not a folder")
    victims, missing = available_victims(args.victims)
    for line in missing:
        say(f"note: {line}")
    cloaks = [ComponentSpec(c) for c in (args.cloak or (() if args.cloaked else (personal.DEFAULT_CLOAK,)))]
    surrogates = args.surrogates or personal.DEFAULT_SURROGATES
    if not args.cloak and not args.cloaked:
        say(f"No --cloaked folder: your posted photos are cloaked now with {personal.DEFAULT_CLOAK} (the strongest "
            f"Fawkes mode fawkes-eval ships) through {', '.join(surrogates)}.")
    aligner = FaceAligner(cache_dir=default_cache_dir(), detector=args.detector)
    extractor, model, threshold = personal.grouping_extractor()
    photos, unreadable = personal.scan_faces(args.me, aligner, extractor)
    for name, reason in sorted(unreadable.items()):
        say(f"  {name}: left out: {reason}")
    if not photos:
        raise personal.PersonalError(f"{args.me}: no readable photo (.jpg, .jpeg, .png) in it")
    choice = personal.find_person(photos, model, threshold, args.face)
    for line in choice.describe(photos):
        say(line)
    copies = personal.match_copies(args.me, args.cloaked) if args.cloaked else None
    if copies is not None:
        for line in copies.describe():
            say(line)
    usable = [n for n in choice.faces if copies is None or n in copies.copies]
    if len(usable) < personal.MIN_PHOTOS:
        raise personal.PersonalError(personal.too_few_message(len(usable), copies is not None))

    name = args.name or "me-audit"
    results_dir = (args.out / name).resolve()
    data = personal.build_dataset(args.me, photos, choice, crowd, results_dir / "input", copies)
    say(f"Crowd: {len(data.crowd.identities) - len(data.crowd_left_out)} identities from {data.crowd.root}"
        + "".join(f"; left out {i} ({why})" for i, why in sorted(data.crowd_left_out.items())))
    campaign = personal.personal_campaign(
        data, cloaks, victims, surrogates, seed, name, args.experiment or "fawkes-eval-me", args.out,
        args.show_faces, args.detector, scenarios=personal.SCENARIOS, countermeasures=(personal.UPLOAD_PRESET,),
        trackers=args.trackers or personal.TRACKERS)
    try:
        check_components(campaign)
    except CampaignError as e:
        raise personal.PersonalError(str(e).removeprefix("<options>: ")) from None
    say(f"Victims: {', '.join(victims)}; threats: trackers ({', '.join(t.label for t in campaign.grid.trackers)}) "
        f"trained on your posted photos, and reverse face search in both directions; each with your photos as "
        f"posted and through {personal.UPLOAD_PRESET}; {len(campaign.cells())} cells (progress on stderr) ...")
    sys.stdout.flush()
    outcome = run_campaign(campaign, args.out, stream=sys.stderr)
    skipped = [e["file"] for e in outcome.left_out]
    posted, encountered = personal.posted_and_encountered(data, skipped, seed)
    lines = personal.verdict_lines(outcome.rows, data.person)
    (outcome.out_dir / "verdict.txt").write_text("\n".join(lines) + "\n")
    print("\n== Do your cloaked photos protect you? ==")
    for line in lines:
        print(line)
    print(f"\nPosted (cloaked; what the trackers learned you from), seed {seed}, 70/30: "
          f"{', '.join(posted)}")
    print(f"Encountered (clean; what they were shown): {', '.join(encountered)}")
    if data.cropped:
        print(f"Cropped around your face (other faces in them): {', '.join(data.cropped)}")
    print(f"Report: {outcome.out_dir / 'report.html'} (faces {'shown' if args.show_faces else 'left out'}); "
          f"markdown: {outcome.out_dir / 'report.md'}; verdict: {outcome.out_dir / 'verdict.txt'}")
    print(f"MLflow: {outcome.tracking_uri} (experiment {campaign.study!r}, parent run {outcome.parent_run_id})")
    for line in outcome.failed:
        print(f"failed: {line}")
    print(f"elapsed: {time.perf_counter() - start:.0f} s")
    return 1 if outcome.failed else 0  # an answer, whatever it says; 1 only when a cell could not give one
