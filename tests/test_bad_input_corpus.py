"""End to end over a corpus of bad input mixed into real photos: ``fawkes-eval cloak`` and ``fawkes-eval run`` (real
subprocesses) never show a traceback, give every bad file one row naming it and its cause, and still use every good
photo. The loaders' unit tests are in test_bad_photos.py; this file checks that the commands carry them through."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_bad_photos import _png_header_claiming

from fawkes_eval.align import FaceAligner, load_photo
from fawkes_eval.data import Dataset

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "fawkes-eval"
GOOD_IDENTITIES = ("Laura_Bush", "Tony_Blair", "Kofi_Annan", "Hugo_Chavez")  # Serena_Williams/ holds only bad files
GOOD_PER_IDENTITY = 4  # photos 9 and 10 are the material of the odd and bad files
PROTECTED = "Laura_Bush"
GROUP_FACES = 9  # the many-faces photo is a 3 x 3 tile of LFW photos, each with its face in the middle


@dataclass(frozen=True)
class Bad:
    """A file that must be left out: the cloak report's status, the campaign's kind, words its reason must hold."""

    status: str  # cloak-report.json: "error" or "no-face"
    kind: str  # errors.json: "unreadable", "refused" or "no-face"
    reason: str  # regular expression searched in the reason


BAD = {
    "Serena_Williams/empty.jpg": Bad("error", "unreadable", r"empty file \(0 bytes\)"),
    "Serena_Williams/truncated.jpg": Bad("error", "unreadable", r"cannot decode"),
    "Serena_Williams/notes.jpg": Bad("error", "unreadable", r"not a readable image"),
    "Kofi_Annan/bomb.png": Bad("error", "unreadable", r"decompression bomb"),
    "Serena_Williams/link.jpg": Bad("error", "refused", r"outside the"),
    "Kofi_Annan/one_pixel.png": Bad("no-face", "no-face", r"only 1x1 pixels"),
    "Tony_Blair/landscape.jpg": Bad("no-face", "no-face", r"no face"),
    "Aligned_Crops/crop_1.png": Bad("no-face", "no-face", r"pre-aligned face crop; pass --aligned"),
    "Aligned_Crops/crop_2.png": Bad("no-face", "no-face", r"pre-aligned face crop; pass --aligned"),
}
# valid but odd files, each made from a real face photo not otherwise in the corpus: they must be used
ODD = ("Tony_Blair/alpha.png", "Tony_Blair/deep16.png", "Kofi_Annan/cmyk.jpg", "Kofi_Annan/grey.jpg",
       "Hugo_Chavez/sideways.jpg", "Hugo_Chavez/group.jpg", "Zoë_Ünïcode/фото_1.jpg", "Zoë_Ünïcode/фото_2.jpg")


@dataclass(frozen=True)
class Corpus:
    root: Path  # ROOT/<identity>/<file>
    good: tuple[str, ...]  # every file that must be used, relative to root (plain LFW photos and ODD)


def _photo(dataset: Dataset, identity: str, number: int) -> Image.Image:
    return Image.open(dataset.root / identity / f"{identity}_{number:04d}.jpg").convert("RGB")


def _tight_crop(photo: Image.Image, aligner: FaceAligner) -> Image.Image:
    """A 112 x 112 face crop as tightly aligned datasets ship them (the face fills the frame): the detector finds
    no face in it, so only the size can tell what it is."""
    face = aligner.align(np.asarray(photo), "arcface-224").crop
    return Image.fromarray(np.ascontiguousarray(face[56:168, 56:168]))


def _group_photo(dataset: Dataset) -> Image.Image:
    """A 3 x 3 tile of nine LFW photos, Hugo Chavez's in the middle (the face a campaign labels with the folder)."""
    others = [(name, n) for name in ("Angelina_Jolie", "Tiger_Woods", "Junichiro_Koizumi", "Jennifer_Capriati")
              for n in (3, 4)]
    tiles = [*others[:4], ("Hugo_Chavez", 10), *others[4:]]
    group = Image.new("RGB", (750, 750))
    for i, (name, number) in enumerate(tiles):
        group.paste(_photo(dataset, name, number), (250 * (i % 3), 250 * (i // 3)))
    return group


def build_corpus(folder: Path, dataset: Dataset, aligner: FaceAligner) -> Corpus:
    root = folder / "corpus"
    for identity in GOOD_IDENTITIES:
        (root / identity).mkdir(parents=True)
        for n in range(1, GOOD_PER_IDENTITY + 1):
            name = f"{identity}_{n:04d}.jpg"
            (root / identity / name).write_bytes((dataset.root / identity / name).read_bytes())
    for sub in ("Serena_Williams", "Aligned_Crops", "Zoë_Ünïcode"):
        (root / sub).mkdir()

    alpha = _photo(dataset, "Tony_Blair", 9).convert("RGBA")
    alpha.putalpha(200)
    alpha.save(root / "Tony_Blair/alpha.png")
    deep = np.asarray(_photo(dataset, "Tony_Blair", 10).convert("L")).astype(np.uint16) * 257
    Image.fromarray(deep).save(root / "Tony_Blair/deep16.png")
    _photo(dataset, "Kofi_Annan", 9).convert("CMYK").save(root / "Kofi_Annan/cmyk.jpg")
    _photo(dataset, "Kofi_Annan", 10).convert("L").save(root / "Kofi_Annan/grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise, with the tag that turns it upright for viewing
    _photo(dataset, "Hugo_Chavez", 9).rotate(90, expand=True).save(root / "Hugo_Chavez/sideways.jpg", exif=exif)
    _group_photo(dataset).save(root / "Hugo_Chavez/group.jpg", quality=95)
    for n in (1, 2):
        _photo(dataset, "Winona_Ryder", n).save(root / f"Zoë_Ünïcode/фото_{n}.jpg")

    (root / "Serena_Williams/empty.jpg").write_bytes(b"")
    whole = io.BytesIO()
    _photo(dataset, "Serena_Williams", 9).save(whole, format="JPEG")
    (root / "Serena_Williams/truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "Serena_Williams/notes.jpg").write_text("shopping list: not a photo\n")
    (root / "Kofi_Annan/bomb.png").write_bytes(_png_header_claiming(30000, 30000))
    outside = folder / "outside.jpg"  # a real face, outside the dataset root
    _photo(dataset, "Serena_Williams", 10).save(outside)
    os.symlink(outside, root / "Serena_Williams/link.jpg")
    Image.new("RGB", (1, 1), (128, 100, 90)).save(root / "Kofi_Annan/one_pixel.png")
    sky_to_ground = np.linspace([150, 190, 240], [70, 110, 40], 200).astype(np.uint8)  # (rows, RGB)
    Image.fromarray(np.repeat(sky_to_ground[:, None], 320, axis=1)).save(root / "Tony_Blair/landscape.jpg")
    for n in (1, 2):
        _tight_crop(_photo(dataset, "Jennifer_Capriati", 8 + n), aligner).save(root / f"Aligned_Crops/crop_{n}.png")

    plain = tuple(f"{i}/{i}_{n:04d}.jpg" for i in GOOD_IDENTITIES for n in range(1, GOOD_PER_IDENTITY + 1))
    return Corpus(root, plain + ODD)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, demo_dataset: Dataset, aligner: FaceAligner) -> Corpus:
    made = build_corpus(tmp_path_factory.mktemp("bad-input"), demo_dataset, aligner)
    on_disk = {p.relative_to(made.root).as_posix() for p in made.root.rglob("*") if p.is_file() or p.is_symlink()}
    assert on_disk == set(made.good) | set(BAD)  # every file is expected to be used or left out, none forgotten
    return made


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(CLI), *args], cwd=cwd, env={**os.environ, **env, "TQDM_DISABLE": "1"},
                          capture_output=True, text=True, timeout=900)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _one_row_each(rows: list[tuple[str, str, str]], expected: dict[str, Bad], field: str) -> None:
    """``rows`` are (file, kind or status, reason): exactly one per bad file, with the right cause."""
    by_file: dict[str, list[tuple[str, str]]] = {}
    for file, kind, reason in rows:
        match = [rel for rel in expected if file.endswith(rel)]
        assert len(match) == 1, f"row for an unexpected file: {file} ({kind}: {reason})"
        by_file.setdefault(match[0], []).append((kind, reason))
    assert sorted(by_file) == sorted(expected)
    for rel, found in by_file.items():
        assert len(found) == 1, f"{rel}: {len(found)} rows"
        kind, reason = found[0]
        assert kind == getattr(expected[rel], field), f"{rel}: {kind} ({reason})"
        assert re.search(expected[rel].reason, reason), f"{rel}: {reason}"


@pytest.mark.slow
def test_cloak_reports_every_bad_file_and_cloaks_the_rest(tmp_path: Path, corpus: Corpus) -> None:
    out = tmp_path / "cloaked"
    done = _run(["cloak", str(corpus.root), str(out), "--method", "noise:low"],
                {"FAWKES_EVAL_CACHE": str(tmp_path / "cache")}, tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # some files could not be read
    report = json.loads((out / "cloak-report.json").read_text())
    photos = {p["path"]: p for p in report["photos"]}
    assert sorted(photos) == sorted([*corpus.good, *BAD])

    _one_row_each([(p["path"], p["status"], p["reason"]) for p in photos.values() if p["status"] != "cloaked"],
                  BAD, "status")
    assert all(photos[rel]["reason"].startswith(f"{rel}: ") for rel in BAD)  # the message names the file
    errors = [rel for rel, bad in BAD.items() if bad.status == "error"]
    assert sorted(report["summary"]["errors"]) == sorted(photos[rel]["reason"] for rel in errors)
    assert not (out / "Serena_Williams" / "link.jpg").exists()  # the link was not followed

    for rel in corpus.good:
        assert photos[rel]["status"] == "cloaked" and photos[rel]["faces"], rel
        assert (out / rel).is_file(), rel
        assert all(face["crop"]["dssim"] > 0 for face in photos[rel]["faces"]), rel  # every face was changed
    assert len(photos["Hugo_Chavez/group.jpg"]["faces"]) >= GROUP_FACES

    # lossless files read back (alpha composited on white, 16-bit scaled) as the cloaked photo: the change is the
    # reported one, and only inside the faces
    for rel in ("Tony_Blair/alpha.png", "Tony_Blair/deep16.png"):
        change = np.abs(load_photo(out / rel).astype(int) - load_photo(corpus.root / rel).astype(int)).max(axis=2)
        inside = np.zeros(change.shape, bool)
        for face in photos[rel]["faces"]:
            left, top, right, bottom = face["box"]
            inside[top:bottom, left:right] = True
        assert change[~inside].max() == 0 and 0 < change.max() <= photos[rel]["full"]["linf"] + 1, rel

    # the sideways photo was cloaked upright and written back sideways, its orientation tag kept
    with Image.open(out / "Hugo_Chavez/sideways.jpg") as cloaked, Image.open(corpus.root / "Hugo_Chavez/sideways.jpg") as clean:
        assert cloaked.size == clean.size and cloaked.getexif().get(0x0112) == 6
    upright = load_photo(out / "Hugo_Chavez/sideways.jpg")
    assert upright.shape == load_photo(corpus.root / "Hugo_Chavez/sideways.jpg").shape == (250, 250, 3)
    with Image.open(out / "Zoë_Ünïcode/фото_1.jpg") as img:
        assert img.size == (250, 250)


CAMPAIGN = """\
study: bad-input-test
campaign: {campaign}
roots: {{data: {folder}}}
datasets:
  - {{name: corpus, root: "data:{name}"{subset}}}
protected: {{users: [{protected}]}}
grid:
  cloaks: [noise:low]
  surrogates: [dlib-resnet-torch]
  victims: [dlib-resnet]
  trackers: [1nn]
protocol: {{n_boot: 200}}
"""


def _campaign(folder: Path, corpus: Corpus, name: str, subset: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fawkes-eval run`` over the corpus (or the ``subset`` of its files) into ``folder/out/<name>``."""
    campaign = folder / f"{name}.yaml"
    listed = ""
    if subset is not None:
        (folder / f"{name}.txt").write_text("\n".join(subset) + "\n", encoding="utf-8")
        listed = f', subset: "{name}.txt"'
    campaign.write_text(CAMPAIGN.format(campaign=name, folder=json.dumps(str(corpus.root.parent)),
                                        name=corpus.root.name, subset=listed, protected=PROTECTED))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "FAWKES_EVAL_CACHE": str(folder / "cache")}
    return _run(["run", str(campaign), "--out", str(folder / "out")], env, folder)


@pytest.mark.slow
def test_campaign_reports_every_left_out_file_and_uses_the_rest(tmp_path: Path, corpus: Corpus) -> None:
    done = _campaign(tmp_path, corpus, "bad-input")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # unreadable and refused files
    no_face = [rel for rel, bad in BAD.items() if bad.kind == "no-face"]
    summary = done.stdout.strip().splitlines()[-1]
    assert f"0 failed; {len(BAD)} file(s) left out ({len(no_face)} without a detectable face)" in summary

    results = tmp_path / "out" / "bad-input"
    rows = json.loads((results / "errors.json").read_text())
    assert {r["dataset"] for r in rows} == {"corpus"}
    _one_row_each([(r["file"], r["kind"], r["reason"]) for r in rows], BAD, "kind")
    for report in ("report.md", "report.html"):
        text = (results / report).read_text()
        assert "Files left out" in text, report
        assert all(Path(rel).name in text for rel in BAD), report

    (row,) = json.loads((results / "results.json").read_text())
    assert row["provenance"]["n_images"] == len(corpus.good)  # every good photo has a detectable face
    assert row["provenance"]["protected_users"] == [PROTECTED]

    # photos without a face are no error on their own (as with cloak): listed, exit status 0
    done = _campaign(tmp_path, corpus, "no-face-only", [*corpus.good, *no_face])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "no-face-only" / "errors.json").read_text())
    _one_row_each([(r["file"], r["kind"], r["reason"]) for r in rows], {rel: BAD[rel] for rel in no_face}, "kind")
