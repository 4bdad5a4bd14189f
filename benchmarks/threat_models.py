"""Threat-model measurements on LFW: the oblivious surrogate x victim matrix and the adaptive tracker.

    .venv/bin/python benchmarks/threat_models.py matrix    # every surrogate x every zoo victim, 1-NN
    .venv/bin/python benchmarks/threat_models.py adaptive  # PSR before / after FaceCure's robust fine-tune
    .venv/bin/python benchmarks/threat_models.py verification  # LFW pairs: TAR@FAR, AUC, EER, dodging per model

Data: 20 LFW identities x 20 images (benchmarks/subsets/lfw_ge20_protocol_20x20.txt, 3 protected users drawn
with the seed) and, for the adaptive tracker only, 10 other identities x 10 images as its public identities
(lfw_ge20_public_10x10.txt). LFW is read from $FAWKES_EVAL_LFW or ../shared/data/lfw. Cloaks and embeddings are
cached in ./.fawkes-eval-cache, shared with ``fawkes-eval sweep`` on the same subset. The countermeasure sweep
is the CLI verb itself:

    .venv/bin/fawkes-eval sweep --data ../shared/data/lfw/images \\
        --subset benchmarks/subsets/lfw_ge20_protocol_20x20.txt --cloak fawkes-v1.0:mid --families jpeg,blur \\
        --victims dlib-resnet --trackers 1nn,logreg --n-protected 3
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROTOCOL = HERE / "subsets" / "lfw_ge20_protocol_20x20.txt"
PUBLIC = HERE / "subsets" / "lfw_ge20_public_10x10.txt"
ZOO = ("dlib-resnet", "dlib-resnet-torch", "mobileface", "hse-faceres", "hse-faceres-deep")


def lfw_images() -> Path:
    for candidate in (os.environ.get("FAWKES_EVAL_LFW"), HERE.parent.parent / "shared" / "data" / "lfw"):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate) / "images"
    sys.exit("LFW not found: set FAWKES_EVAL_LFW or place it at ../shared/data/lfw")


def campaign(name: str, cloak: str, surrogates: tuple[tuple[str, ...], ...], victims: tuple[str, ...],
             trackers: tuple[str, ...], args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from fawkes_eval.campaign import Campaign, DatasetSpec, GridSpec, ProtectedSpec, entries

    return Campaign(
        study="fawkes-eval-threat-models", name=name,
        datasets=(DatasetSpec(PROTOCOL.stem, lfw_images(), PROTOCOL),),
        grid=GridSpec(entries(cloak), surrogates, entries(*victims), entries(*trackers), seeds=(args.seed,)),
        protected=ProtectedSpec((), args.n_protected),
    )


def matrix(args: argparse.Namespace) -> None:
    """Oblivious tracker: the cloak made through each surrogate, measured on every zoo victim."""
    from fawkes_eval.runner import run_campaign

    surrogates = tuple((s,) for s in args.surrogates.split(","))
    outcome = run_campaign(campaign("oblivious-matrix", args.cloak, surrogates, ZOO, ("1nn",), args),
                           Path(args.out), stream=sys.stderr)
    cells = {(r.cell["surrogates"], r.cell["victim"]): r.metrics for r in outcome.rows}
    print(f"\nPSR [95% CI] of {args.cloak}, 1-NN tracker, surrogate (rows) x victim (columns); "
          "others' accuracy in parentheses\n")
    print("| surrogate \\ victim | " + " | ".join(ZOO) + " |")
    print("|---|" + "---|" * len(ZOO))
    for (surrogate,) in surrogates:
        line = []
        for victim in ZOO:
            m = cells.get((surrogate, victim))
            line.append("failed" if m is None else
                        f"{m['psr']:.2f} [{m['psr_ci_low']:.2f}, {m['psr_ci_high']:.2f}] ({m['others_acc']:.2f})")
        print(f"| {surrogate} | " + " | ".join(line) + " |")
    _measured_on(outcome.rows)


def adaptive(args: argparse.Namespace) -> None:
    """FaceCure's robust-feature attack: PSR with the victim before and after adapting it to the cloak."""
    from fawkes_eval.align import default_cache_dir, load_photo
    from fawkes_eval.components import build_generator
    from fawkes_eval.data import load_dataset
    from fawkes_eval.metrics import paired_difference
    from fawkes_eval.registry import TRACKERS
    from fawkes_eval.workspace import CachedCloak, RunContext, Workspace
    from recognizers.trackers import FineTuneConfig
    from scenarios.adaptive import AdaptiveConfig, adapt_extractor, adapt_to_cloak
    from scenarios.photos import EmbeddingCache
    from scenarios.protection import AlignedFaces, ProtectionBench

    victim_name = args.surrogates.split(",")[0]  # white-box: the tracker adapts the cloak's own surrogate network
    spec = campaign("adaptive", args.cloak, ((victim_name,),), (victim_name,), ("1nn", "logreg"), args)
    with tempfile.TemporaryDirectory() as results:
        ws = Workspace(RunContext(spec, ("dlib-150",), default_cache_dir().resolve(), Path(results), "", ""),
                       sys.stderr)
        victim = ws.model(victim_name)
        generator = CachedCloak(build_generator(args.cloak, surrogates=[victim]), ws.cloak_store, [victim])

        public = load_dataset(lfw_images(), PUBLIC)
        ws.say(f"cloaking {len(public.records)} photos of {len(public.identities)} public identities ...")
        config = AdaptiveConfig(FineTuneConfig(epochs=args.epochs, lr=args.lr, head_lr=1e-2, seed=args.seed))
        start = time.perf_counter()
        records = [r for r in public.records if _has_face(ws.aligner(PROTOCOL.stem), r.path, generator.template)]
        adapted, record = adapt_to_cloak(
            victim, generator, ws.aligner(PROTOCOL.stem), [load_photo(r.path) for r in records],
            [str(r.path) for r in records], [r.identity for r in records], args.seed, config,
        )
        ws.say(f"adapted in {time.perf_counter() - start:.0f} s")
        # control: the same fine-tune on the same public photos, clean only (as many images: each twice), to
        # separate adapting to the cloak from merely training on more faces
        public_faces = EmbeddingCache(AlignedFaces.of(victim), ws.aligner(PROTOCOL.stem)).embed(
            [load_photo(r.path) for r in records], [str(r.path) for r in records])
        control, _ = adapt_extractor(victim, public_faces, public_faces, np.array([r.identity for r in records]),
                                     "clean-only", config)
        data = ws.prepared(PROTOCOL.stem)
        split = data.split(args.seed, 0.7)
        protected = data.protected(spec.protected, args.seed)
        scenario = ProtectionBench(data.photos, data.sources, data.identities, ws.aligner(PROTOCOL.stem))
        ws.say(f"cloaking the protected users {', '.join(protected)} ...")
        cloaked, _ = scenario.cloak_users(generator, split, protected, args.seed)

        print(f"\nAdaptive tracker vs {args.cloak} (surrogate {victim_name}), victim {victim_name}; "
              f"{len(set(data.identities))} identities x <= 20 images, protected {', '.join(protected)}\n")
        print("| tracker | PSR before [95% CI] | PSR after [95% CI] | after - before [95% CI] | "
              "others' acc before / after | control: clean-only fine-tune PSR [95% CI] (others' acc) |")
        print("|---|---|---|---|---|---|")
        for tracker in ("1nn", "logreg"):
            make = functools.partial(TRACKERS.create, tracker)
            before = scenario.evaluate(cloaked, victim, make, split, protected, args.seed)
            after = scenario.evaluate(cloaked, adapted, make, split, protected, args.seed)
            naive = scenario.evaluate(cloaked, control, make, split, protected, args.seed)
            diff = paired_difference([after.misses[u] for u in protected], [before.misses[u] for u in protected],
                                     seed=args.seed)
            print(f"| {tracker} | {before.psr} | {after.psr} | {diff.value:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}] "
                  f"| {before.others_acc:.2f} / {after.others_acc:.2f} | {naive.psr} ({naive.others_acc:.2f}) |")
        print(f"\nAdaptation: {len(record.identities)} public identities ({', '.join(record.identities)}), "
              f"{record.n_pairs} clean/cloaked pairs, cloaking {record.seconds_cloaking:.0f} s "
              f"(when first computed; cached on disk since), "
              f"fine-tuning {record.seconds_training:.0f} s on {ws.environment.get('device', 'cpu')}; "
              f"config {record.config}. Queries: {before.n_queries} clean test photos of the protected users; "
              f"dataset manifest sha256 {data.dataset.manifest_hash()[:12]}, seed {args.seed}.")


def verification(args: argparse.Namespace) -> None:
    """LFW pairs.txt per zoo extractor: TAR@FAR, AUC, EER on clean pairs, then the cloak's dodging rate."""
    from fawkes_eval.align import FaceAligner, default_cache_dir
    from fawkes_eval.components import build_generator
    from fawkes_eval.registry import EXTRACTORS
    from fawkes_eval.rooms import load_rooms
    from scenarios.verification import VerificationConfig, dodging_rate, read_pairs, select_pairs, verify_clean

    load_rooms()
    images = lfw_images()
    pairs = read_pairs(images.parent / "pairs.txt")
    config = VerificationConfig(folds=tuple(range(args.folds)), pairs_per_fold=args.pairs_per_fold)
    aligner = FaceAligner(cache_dir=default_cache_dir())
    surrogate = EXTRACTORS.create(args.surrogates.split(",")[0])
    generator = build_generator(args.cloak, surrogates=[surrogate])
    dodge_pairs = [p for p in select_pairs(pairs, config) if p.same][: args.dodging_pairs]
    print(f"| extractor | TAR@1e-2 [95% CI] | TAR@1e-3 [95% CI] | held-out FAR 1e-2 / 1e-3 | AUC | EER | "
          f"dodging@1e-2 ({args.cloak}) | clean reject@1e-2 | pairs (skipped) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ZOO:
        extractor = EXTRACTORS.create(name)
        clean = verify_clean(extractor, aligner, images, pairs, config, seed=args.seed)
        dodge = dodging_rate(extractor, generator, aligner, images, dodge_pairs, clean.thresholds, seed=args.seed)
        print(f"| {name} | {clean.tar[1e-2]} | {clean.tar[1e-3]} | {clean.held_out_far[1e-2]:.4f} / "
              f"{clean.held_out_far[1e-3]:.4f} | {clean.auc:.4f} | {clean.eer:.4f} | {dodge.dodging[1e-2]} | "
              f"{dodge.clean_reject[1e-2]} | {clean.n_pairs} ({clean.n_skipped_pairs}) |", flush=True)
    print(f"\nLFW pairs.txt folds 0-{args.folds - 1}, {args.pairs_per_fold or 'all'} same + different pairs per fold; "
          f"thresholds leave-one-fold-out; dodging on {len(dodge_pairs)} same-person pairs (first photo cloaked "
          f"through {surrogate.info.name}), CIs bootstrap folds/identities and pairs, seed {args.seed}.")


def _has_face(aligner, path: Path, template: str) -> bool:  # type: ignore[no-untyped-def]
    from fawkes_eval.align import NoFaceError, load_photo

    try:
        aligner.align(load_photo(path), template, str(path))
    except NoFaceError:
        print(f"skipped {path}: no face found", file=sys.stderr)
        return False
    return True


def _measured_on(rows: list) -> None:  # type: ignore[type-arg]
    if rows:
        p = rows[0].provenance
        print(f"\nMeasured on {p['dataset']} (manifest sha256 {p['manifest_sha256'][:12]}): {p['n_identities']} "
              f"identities, {p['n_images']} images; protected {', '.join(p['protected_users'])} "
              f"({p['n_queries']} clean test queries); seed {rows[0].cell['seed']}; CIs bootstrap users and images.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("matrix", "adaptive", "verification"))
    parser.add_argument("--cloak", default="fawkes-v1.0:mid")
    parser.add_argument("--surrogates", default="dlib-resnet-torch,mobileface",
                        help="matrix: one row per surrogate; adaptive: the first is also the victim")
    parser.add_argument("--n-protected", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="adaptive: fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="adaptive: learning rate of the network's weights")
    parser.add_argument("--out", default="fawkes-eval-out")
    parser.add_argument("--folds", type=int, default=10, help="verification: folds of pairs.txt used")
    parser.add_argument("--pairs-per-fold", type=int, help="verification: first n same + n different per fold")
    parser.add_argument("--dodging-pairs", type=int, default=30, help="verification: same pairs cloaked")
    args = parser.parse_args()
    np.set_printoptions(precision=3)
    {"matrix": matrix, "adaptive": adaptive, "verification": verification}[args.what](args)


if __name__ == "__main__":
    main()
