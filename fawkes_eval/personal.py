"""The personal audit (``fawkes-eval audit --me DIR``): one person's photos against a crowd, one plain verdict per
threat and victim.

It is a campaign like any other (README, "Check your own cloaked photos"); this module only turns the person's
folder into one:

1. ``find_person``: every face of every photo is detected (``FaceAligner.align_faces``) and embedded with a strong
   victim; the faces are grouped (average-linkage clustering on cosine similarity) and the person is the group
   that most photos share (``--face PHOTO:INDEX`` names one of their faces instead).
2. ``build_dataset``: an identity-folder dataset, the crowd (hard links, or copies across file systems) plus the
   person under ``PERSON``. Every file gets a neutral name (``photo-000.jpg``), so that odd, clashing or
   ``_cloaked``-suffixed names cannot break the external cloak's pairing by relative path; a photo where other
   faces were found is cropped around the person's face (the cloaked copy with the same box), so that the face
   every victim picks (the one nearest the centre, ``FaceAligner``) is theirs. A crowd identity that shares a file
   with the person, or bears the folder's name, is left out of the crowd (they would be their own distractor).
3. ``personal_campaign``: cloaks ``none`` (the clean baseline) plus the person's cloak (``external`` over their
   cloaked copies, or generators made now), one protected user (the person), the seeded 70/30 split: "posted"
   (cloaked, what trackers learn from) and "encountered" (clean, what they are shown).
4. ``verdict_lines``: each row beside its clean baseline (``fawkes_eval.baselines``) as one sentence.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from fawkes_eval.baselines import BASELINE_CLOAK, indistinguishable_from_clean, with_baselines
from fawkes_eval.campaign import (
    NO_COUNTERMEASURE,
    Campaign,
    DatasetSpec,
    GridSpec,
    OutputSpec,
    ProtectedSpec,
    ProtocolSpec,
    entries,
)
from fawkes_eval.components import ComponentSpec
from fawkes_eval.data import IMAGE_SUFFIXES, Dataset, load_dataset, sha256_file, split_dataset
from fawkes_eval.results import ResultRow

PERSON = "me"  # the person's identity folder in the assembled dataset
MIN_PHOTOS = 6  # with 70/30: at least 4 posted (cloaked) and 2 encountered (clean)
TRAIN_FRACTION = 0.7
DEFAULT_CLOAK = "fawkes-v1.0:high"  # the strongest Fawkes mode fawkes-eval ships
DEFAULT_SURROGATES = ("dlib-resnet-torch",)
TRACKERS = ("1nn", "logreg", "enroll-search:1e-3")
SCENARIOS = ("protection", "search")  # a tracker trained on the posted photos; reverse face search, both directions
UPLOAD_PRESET = "instagram-like"  # what one platform does to an upload (scenarios/countermeasures.py)
# One entry per network (the -torch / -tf twins run the same weights and give the same answer); the InsightFace one
# only where its package is installed.
DEFAULT_VICTIMS = ("dlib-resnet", "mobileface", "hse-faceres", "hse-faceres-deep", "insightface-mbf-w600k")
# Models that group faces, best first, with the cosine similarity at which two faces count as one person. Measured
# on the bundled LFW sample (100 photos, 10 people): insightface-mbf-w600k, same person 1st percentile 0.325,
# different people 99.9th percentile 0.201 (max 0.241); dlib-resnet-torch, same 5th percentile 0.926, different
# 99.9th 0.916.
GROUPING_MODELS = (("insightface-mbf-w600k", 0.28), ("dlib-resnet-torch", 0.92))
CROP_MARGINS = (1.0, 0.6, 0.35, 0.15)  # margin around the face box, in box sides, widest first


class PersonalError(ValueError):
    """Input the personal audit cannot use (exit status 2); the message says what and why."""


Box = tuple[int, int, int, int]  # left, top, right, bottom in photo pixels


@dataclass(frozen=True)
class PhotoFaces:
    """One of the person's photos: its name (relative to their folder), size and every face found in it."""

    name: str
    path: Path
    size: tuple[int, int]  # (width, height), EXIF orientation applied
    boxes: tuple[Box, ...]  # top to bottom, then left to right: the face numbers --face uses
    embeddings: np.ndarray  # (faces, dim), L2-normalised


@dataclass(frozen=True)
class PersonChoice:
    """Which face is the person in each photo, and how that was decided."""

    faces: dict[str, int]  # photo name -> index of the person's face in PhotoFaces.boxes
    not_found: dict[str, str]  # photo name -> why the person is not in it
    model: str
    threshold: float
    override: str | None  # the --face given, if any
    others: list[int]  # for every other group of faces: in how many photos it appears, largest first
    tied: bool  # another group appears in as many photos as the chosen one

    def describe(self, photos: Sequence[PhotoFaces]) -> list[str]:
        by_name = {p.name: p for p in photos}
        how = (f"the group holding face {self.override}" if self.override else
               "the person most of your photos share")
        lines = [f"Found you in {len(self.faces)} of {len(photos)} photos ({how}; faces grouped by {self.model} at "
                 f"cosine similarity {self.threshold:g}):"]
        for name, index in sorted(self.faces.items()):
            n = len(by_name[name].boxes)
            extra = f" of {n} (cropped around yours)" if n > 1 else ""
            lines.append(f"  {name}: face {index}{extra}, box {by_name[name].boxes[index]}")
        for name, reason in sorted(self.not_found.items()):
            lines.append(f"  {name}: left out: {reason}")
        if self.others:
            lines.append(f"  other people: {len(self.others)}, in " + ", ".join(map(str, self.others)) + " photo(s)")
        if self.tied:
            lines.append("  another person is in as many of your photos: check the choice above")
        lines.append("  Not you? Rerun with --face PHOTO:INDEX naming one of your faces (numbered from 0, top to "
                     "bottom, then left to right).")
        return lines


def photo_files(folder: Path) -> list[Path]:
    """The photos of the person's folder (any depth), sorted."""
    if not folder.is_dir():
        raise PersonalError(f"{folder}: not a folder of photos")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def grouping_extractor() -> tuple[Any, str, float]:
    """The first of ``GROUPING_MODELS`` that loads here: (extractor, name, threshold)."""
    from fawkes_eval.registry import EXTRACTORS
    from recognizers.weights import WeightsError

    for name, threshold in GROUPING_MODELS:
        try:
            return EXTRACTORS.create(name), name, threshold
        except (WeightsError, ImportError):
            continue
    raise PersonalError(f"none of the face-grouping models loads here: {', '.join(n for n, _ in GROUPING_MODELS)}")


def scan_faces(folder: Path, aligner: Any, extractor: Any) -> tuple[list[PhotoFaces], dict[str, str]]:
    """Every face of every photo in ``folder``, embedded by ``extractor``; unreadable photos by name -> reason."""
    from fawkes_eval.align import PhotoError, load_photo

    photos, unreadable = [], {}
    template = extractor.info.template
    for path in photo_files(folder):
        name = path.relative_to(folder).as_posix()
        try:
            photo = load_photo(path)
        except PhotoError as e:
            unreadable[name] = str(e).removeprefix(f"{path}: ")
            continue
        faces = aligner.align_faces(photo, template, source=str(path))
        if faces:
            emb = np.asarray(extractor.embed(np.stack([f.crop for f in faces])), dtype=np.float64)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        else:
            emb = np.zeros((0, 1))
        photos.append(PhotoFaces(name, path, (photo.shape[1], photo.shape[0]), tuple(f.box for f in faces), emb))
    return photos, unreadable


def parse_face(text: str) -> tuple[str, int]:
    """``PHOTO:INDEX`` -> (photo name, face index)."""
    name, sep, index = text.rpartition(":")
    if not sep or not name or not index.isdigit():
        raise PersonalError(f"--face {text!r}: expected PHOTO:INDEX, e.g. IMG_0042.jpg:1 (faces numbered from 0)")
    return name, int(index)


def _groups(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage groups of L2-normalised embeddings whose mean cosine similarity clears ``threshold``."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    distances = np.clip(1.0 - embeddings @ embeddings.T, 0.0, 2.0)[np.triu_indices(len(embeddings), 1)]
    return np.asarray(fcluster(linkage(distances, method="average"), t=1.0 - threshold, criterion="distance")) - 1


def find_person(photos: Sequence[PhotoFaces], model: str, threshold: float, face: str | None = None) -> PersonChoice:
    """The person: the group of faces that appears in the most photos (ties: the larger faces), or the group of
    the face ``face`` (``PHOTO:INDEX``) names. In each photo, their face is the group's face nearest its mean."""
    owners = [(p.name, i) for p in photos for i in range(len(p.boxes))]
    if not owners:
        raise PersonalError("no face found in any of the photos")
    embeddings = np.concatenate([p.embeddings for p in photos if len(p.boxes)])
    labels = _groups(embeddings, threshold)
    area = np.array([(b[2] - b[0]) * (b[3] - b[1]) for p in photos for b in p.boxes], dtype=float)
    photos_of = {int(g): len({owners[j][0] for j in np.flatnonzero(labels == g)}) for g in set(labels.tolist())}
    if face is not None:
        name, index = parse_face(face)
        by_name = {p.name: p for p in photos}
        if name not in by_name:
            raise PersonalError(f"--face {face}: no photo {name!r} with a face (photos: "
                                f"{', '.join(sorted(by_name)[:5])}{', ...' if len(by_name) > 5 else ''})")
        if index >= len(by_name[name].boxes):
            raise PersonalError(f"--face {face}: {name} has {len(by_name[name].boxes)} face(s), numbered from 0")
        chosen = int(labels[owners.index((name, index))])
    else:
        chosen = max(photos_of, key=lambda g: (photos_of[g], area[labels == g].mean()))
    members = np.flatnonzero(labels == chosen)
    centre = embeddings[members].mean(0)
    faces: dict[str, int] = {}
    best: dict[str, float] = {}
    for j in members:
        name, index = owners[j]
        similarity = float(embeddings[j] @ centre)
        if name not in best or similarity > best[name]:
            faces[name], best[name] = index, similarity
    not_found = {p.name: ("no face found" if not p.boxes else "you are not among its faces")
                 for p in photos if p.name not in faces}
    others = sorted((n for g, n in photos_of.items() if g != chosen), reverse=True)
    return PersonChoice(faces, not_found, model, threshold, face, others,
                        tied=face is None and bool(others) and others[0] == photos_of[chosen])


def crop_around(size: tuple[int, int], box: Box, others: Sequence[Box]) -> Box:
    """A region of the photo around ``box`` (as wide a margin as ``CROP_MARGINS`` allows) in which this face's
    centre is nearer the region's centre than any other face's centre, so a victim that takes the central face
    takes this one."""
    width, height = size

    def centre(b: Box) -> tuple[float, float]:
        return (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0

    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy = centre(box)
    region: Box = (0, 0, width, height)
    for margin in CROP_MARGINS:
        half = side * (0.5 + margin)
        region = (max(0, int(cx - half)), max(0, int(cy - half)), min(width, int(cx + half) + 1),
                  min(height, int(cy + half) + 1))
        rx, ry = (region[0] + region[2]) / 2.0, (region[1] + region[3]) / 2.0
        mine = (cx - rx) ** 2 + (cy - ry) ** 2
        rivals = [(ox - rx) ** 2 + (oy - ry) ** 2 for ox, oy in map(centre, others)
                  if region[0] <= ox < region[2] and region[1] <= oy < region[3]]
        if all(mine < r for r in rivals):
            break
    return region


@dataclass(frozen=True)
class CloakedCopies:
    """The person's cloaked copies matched to their photos by file name (``attacks.external.pair_files``: relative
    path, extension free, ``<stem>_cloaked`` allowed)."""

    copies: dict[str, Path]  # photo name -> its cloaked copy
    missing: tuple[str, ...]  # photos with no cloaked copy (or with two)
    unmatched: tuple[str, ...]  # cloaked files matching no photo
    resized: tuple[str, ...]  # copies whose size differs from the photo's
    unreadable: tuple[str, ...]

    def describe(self) -> list[str]:
        lines = [f"Cloaked copies: {len(self.copies)} matched by file name"]
        for label, items in (("photos without a cloaked copy (left out)", self.missing),
                             ("cloaked files matching none of your photos (ignored)", self.unmatched),
                             ("cloaked copies of another size than the photo (left out)", self.resized),
                             ("unreadable (left out)", self.unreadable)):
            if items:
                lines.append(f"  {label}: {', '.join(items)}")
        return lines


def match_copies(folder: Path, cloaked: Path) -> CloakedCopies:
    from attacks.external import pair_files

    if not cloaked.is_dir():
        raise PersonalError(f"--cloaked {cloaked}: not a folder")
    report = pair_files(folder, cloaked)
    return CloakedCopies({p.relative: p.cloaked for p in report.pairs}, report.missing_cloaked,
                         report.unmatched_cloaked, report.resized, report.unreadable)


@dataclass(frozen=True)
class PersonalData:
    """The assembled dataset: ``root/<crowd identity>/...`` plus ``root/<person>/photo-NNN.ext``."""

    root: Path
    person: str
    names: dict[str, str]  # dataset file name (in root/<person>/) -> the person's own file name
    cloaked_dir: Path | None  # the cloaked copies under the same neutral names
    cropped: tuple[str, ...]  # the person's files cropped around their face
    crowd: Dataset
    crowd_left_out: dict[str, str] = field(default_factory=dict)  # crowd identity -> why


def _place(source: Path, target: Path) -> None:
    """A hard link where the file system allows it (the crowd can be all of LFW), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_crop(source: Path, region: Box, target: Path) -> None:
    from PIL import Image

    from fawkes_eval.align import load_photo

    target.parent.mkdir(parents=True, exist_ok=True)
    photo = load_photo(source)
    Image.fromarray(photo[region[1]:region[3], region[0]:region[2]]).save(target, format="PNG")


def build_dataset(folder: Path, photos: Sequence[PhotoFaces], choice: PersonChoice, crowd_root: Path, into: Path,
                  copies: CloakedCopies | None = None) -> PersonalData:
    """Write the crowd and the person's chosen photos (those with a cloaked copy when ``copies`` is given) into
    ``into`` (replaced)."""
    crowd = load_dataset(crowd_root)
    mine = {sha256_file(p.path) for p in photos} | {sha256_file(c) for c in (copies.copies.values() if copies else ())}
    left_out: dict[str, str] = {}
    for identity, records in crowd.by_identity().items():
        shared = sum(r.sha256 in mine for r in records)
        if shared:
            left_out[identity] = f"shares {shared} photo(s) with yours"
        elif identity.casefold() == folder.name.casefold():
            left_out[identity] = f"has the name of your folder {folder.name!r}"
    person = PERSON
    while person in crowd.identities:
        person += "_"
    if into.exists():
        shutil.rmtree(into)
    root, cloaked_dir = into / "dataset", (into / "cloaked" if copies is not None else None)
    for record in crowd.records:
        if record.identity not in left_out:
            _place(record.path, root / record.path.relative_to(crowd.root))
    names, cropped = {}, []
    usable = [p for p in photos if p.name in choice.faces and (copies is None or p.name in copies.copies)]
    for number, photo in enumerate(sorted(usable, key=lambda p: p.name)):
        index = choice.faces[photo.name]
        others = [b for i, b in enumerate(photo.boxes) if i != index]
        stem = f"photo-{number:03d}"
        if others:  # crop around the person's face; the copy with the same box
            region = crop_around(photo.size, photo.boxes[index], others)
            name = f"{stem}.png"
            _write_crop(photo.path, region, root / person / name)
            if copies is not None and cloaked_dir is not None:
                _write_crop(copies.copies[photo.name], region, cloaked_dir / name)
            cropped.append(photo.name)
        else:
            name = stem + photo.path.suffix.lower()
            _place(photo.path, root / person / name)
            if copies is not None and cloaked_dir is not None:
                copy = copies.copies[photo.name]
                _place(copy, cloaked_dir / (stem + copy.suffix.lower()))
        names[name] = photo.name
    return PersonalData(root, person, names, cloaked_dir, tuple(cropped), crowd, left_out)


def too_few_message(found: int, with_copy: bool) -> str:
    have = f"{found} of your photos {'show your face and have a cloaked copy' if with_copy else 'show your face'}"
    return (f"{have}; the audit needs at least {MIN_PHOTOS}. About {TRAIN_FRACTION:.0%} of them are posted "
            f"(cloaked: what a tracker learns you from) and the rest are encountered (clean: what it is then shown), "
            f"so {MIN_PHOTOS} gives {round(TRAIN_FRACTION * MIN_PHOTOS)} to learn from and "
            f"{MIN_PHOTOS - round(TRAIN_FRACTION * MIN_PHOTOS)} to test on; with fewer, one photo would decide the "
            f"verdict. Add more photos of yourself (any names, any sizes) and run again.")


def personal_campaign(data: PersonalData, cloaks: Sequence[ComponentSpec], victims: Sequence[str],
                      surrogates: Sequence[str], seed: int, name: str, experiment: str, out_root: Path,
                      show_faces: bool, detector: str | None = None, scenarios: Sequence[str] = ("protection",),
                      countermeasures: Sequence[str] = (), trackers: Sequence[str] = TRACKERS,
                      n_boot: int = 2000) -> Campaign:
    """The campaign of one personal audit: ``none`` and the given cloaks, the person protected."""
    cloak_entries: list[ComponentSpec] = [ComponentSpec(BASELINE_CLOAK)]
    if data.cloaked_dir is not None:
        cloak_entries.append(ComponentSpec.of("external", {
            "clean_dir": str(data.root / data.person), "cloaked_dir": str(data.cloaked_dir),
            "tool": "your cloaked copies (--cloaked)"}))
    cloak_entries += list(cloaks)
    return Campaign(
        study=experiment, name=name,
        datasets=(DatasetSpec("personal", data.root, None, detector),),
        grid=GridSpec(tuple(cloak_entries), (tuple(surrogates),), entries(*victims), entries(*trackers),
                      countermeasures=entries(NO_COUNTERMEASURE, *countermeasures), seeds=(seed,),
                      scenarios=entries(*scenarios)),
        protected=ProtectedSpec((data.person,), 1),
        protocol=ProtocolSpec(train_fraction=TRAIN_FRACTION, n_boot=n_boot),
        outputs=OutputSpec(out_root, examples=show_faces),
    )


def posted_and_encountered(data: PersonalData, skipped: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """The person's own file names on each side of the campaign's split (the runner splits the photos every
    model could align, ``skipped`` being the others' paths)."""
    dataset = load_dataset(data.root)
    usable = Dataset(dataset.root, tuple(r for r in dataset.records if str(r.path) not in set(skipped)), dataset.name)
    split = split_dataset(usable, seed, TRAIN_FRACTION)

    def own(indices: list[int]) -> list[str]:
        return sorted(data.names[usable.records[i].path.name] for i in indices)

    return own(split.train.get(data.person, [])), own(split.test.get(data.person, []))


# --- the verdict ---------------------------------------------------------------------------------------------------

VICTIM_NAMES = {
    "dlib-resnet": "dlib's ResNet face descriptor (dlib-resnet)",
    "dlib-resnet-torch": "dlib's ResNet in PyTorch (dlib-resnet-torch)",
    "mobileface": "MobileFace (mobileface)",
    "hse-faceres": "HSE FaceRes (hse-faceres)",
    "hse-faceres-deep": "HSE FaceRes, deep variant (hse-faceres-deep)",
    "insightface-mbf-w600k": "InsightFace's buffalo_s model (insightface-mbf-w600k)",
    "insightface-mbf-w600k-torch": "InsightFace's buffalo_s model in PyTorch (insightface-mbf-w600k-torch)",
}
TRACKER_NAMES = {
    "1nn": "matching you to the most similar photo it holds (1-NN)",
    "logreg": "as a classifier trained on everyone's photos (logistic regression)",
    "enroll-search:1e-3": "as a face-search service (enroll and search, 1 false match in 1,000)",
    "enroll-search:1e-2": "as a face-search service (enroll and search, 1 false match in 100)",
}


def cloak_title(row: ResultRow) -> str:
    cloak = str(row.cell["cloak"])
    if cloak == "external":
        return "your cloaked copies"
    surrogates = row.cell.get("surrogates")
    return f"{cloak}, made now" + (f" through {surrogates}" if surrogates else "")


def _verdict(row: ResultRow, base: ResultRow | None, person: str, missed: int, n: int) -> str:
    """Protected / partly / none, from the counts and the paired CI above the clean baseline."""
    if base is None:
        return "no clean baseline to compare with"
    base_missed, base_n = sum(base.outcomes.get(person, [])), len(base.outcomes.get(person, []))
    if base_n and base_missed == base_n:
        return "says nothing about the cloak: this model misses you even without cloaks"
    if indistinguishable_from_clean(row):
        return "no protection" if missed <= base_missed else "no protection shown (within chance of the clean result)"
    return "protected" if missed == n else "partly protected"


def _search_verdict(row: ResultRow, base: ResultRow | None, metric: str) -> str:
    """Direction (b) has no per-query outcomes in the row: its CI against the baseline's rate decides."""
    if base is None:
        return "no clean baseline to compare with"
    if row.metrics.get(f"{metric}_ci_low", 0.0) > base.metrics.get(metric, 0.0):
        return "protected" if row.metrics.get(metric, 0.0) == 1.0 else "partly protected"
    return "no protection" if row.metrics.get(metric, 0.0) <= base.metrics.get(metric, 0.0) else (
        "no protection shown (within chance of the clean result)")


def sentences(row: ResultRow, base: ResultRow | None, person: str) -> list[str]:
    """The verdict lines of one cell: one for a tracker, two for reverse face search (both directions)."""
    victim = VICTIM_NAMES.get(str(row.cell["victim"]), str(row.cell["victim"]))
    outcomes = row.outcomes.get(person, [])
    n, missed = len(outcomes), sum(outcomes)
    countermeasure = str(row.cell.get("countermeasure", NO_COUNTERMEASURE))
    upload = f", your uploads put through {countermeasure}" if countermeasure != NO_COUNTERMEASURE else ""
    base_outcomes = base.outcomes.get(person, []) if base is not None else []
    base_found = len(base_outcomes) - sum(base_outcomes)
    without = f"without cloaks: {base_found} of {len(base_outcomes)}" if base is not None else "no clean baseline"
    scenario = row.cell.get("scenario", "protection")
    if scenario == "protection":
        tracker = str(row.cell["tracker"])
        text = (f"{victim} {TRACKER_NAMES.get(tracker, f'with the {tracker} tracker')}{upload}, trained on your "
                f"cloaked photos, recognised you in {n - missed} of {n} clean photos ({without}): "
                f"{_verdict(row, base, person, missed, n)}")
        others = row.metrics.get("others_acc")
        if others is not None and others == others and others < 0.5:
            text += f" (but it recognised only {others:.0%} of the crowd's photos: a weak tracker)"
        return [text + "."]
    if scenario == "search":
        lines = [f"Reverse face search with {victim}{upload}: a clean photo of you, searched among your cloaked "
                 f"uploads and the crowd's photos, found you first in {n - missed} of {n} searches ({without}): "
                 f"{_verdict(row, base, person, missed, n)}."]
        n_b = int(cast(int, row.provenance.get("n_queries_b", 0)))
        found_b = round(n_b * (1.0 - row.metrics.get("b_protection_at_1", 0.0)))
        base_b = "no clean baseline" if base is None else (
            f"without cloaks: {round(n_b * (1.0 - base.metrics.get('b_protection_at_1', 0.0)))} of {n_b}")
        lines.append(f"Reverse face search with {victim}{upload}: your cloaked photos, searched against a gallery "
                     f"holding one clean photo of you and the crowd's photos, found it first in {found_b} of {n_b} "
                     f"searches ({base_b}): {_search_verdict(row, base, 'b_protection_at_1')}.")
        return lines
    missed_clean = f"without cloaks: missed {sum(base_outcomes)} of {len(base_outcomes)}" if base is not None else (
        "no clean baseline")
    return [f"{victim}{upload}, {scenario}: {missed} of {n} attempts missed you ({missed_clean}): "
            f"{_verdict(row, base, person, missed, n)}."]


def verdict_lines(rows: Sequence[ResultRow], person: str) -> list[str]:
    """One sentence per cloak, threat and victim, grouped by cloak (every cell but the clean baseline's)."""
    pairs = [(row, base) for row, base in with_baselines(rows) if row.cell.get("cloak") != BASELINE_CLOAK]
    lines: list[str] = []
    for title in dict.fromkeys(cloak_title(row) for row, _ in pairs):
        lines.append(f"With {title}:")
        lines += [f"  {line}" for row, base in pairs if cloak_title(row) == title
                  for line in sentences(row, base, person)]
    return lines
