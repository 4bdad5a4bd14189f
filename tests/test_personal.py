"""The personal audit (``fawkes-eval audit --me DIR``): one LFW identity as "me" among the bundled sample's others.

One run serves most assertions (module fixture): Tony Blair's bundled photos under meaningless names, one of them
with Kofi Annan's photo pasted beside his; cloaked copies from a folder (seeded noise, ``_cloaked`` names, one
missing, one stray) plus two cloaks made now (a white-box Fawkes through dlib's own family and the noise control);
the whole CLI in a process whose non-loopback connections are refused.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_offline import GUARDED_CLI

from fawkes_eval.cli import main
from fawkes_eval.personal import crop_around, match_copies, too_few_message

pytestmark = pytest.mark.heavy

SAMPLE = Path(__file__).resolve().parent.parent / "fawkes_eval" / "demo_data" / "lfw_sample"
ME, PASTED = "Tony_Blair", "Kofi_Annan"
VICTIMS = ("dlib-resnet", "mobileface")
TRACKERS = ("1-NN", "logistic regression", "enroll and search")


def make_me(folder: Path, n: int = 8) -> tuple[list[str], str]:
    """``n`` of ME's photos under meaningless names; the fourth is a 500x250 photo with PASTED on its left."""
    folder.mkdir(parents=True)
    names = []
    for i, source in enumerate(sorted((SAMPLE / ME).iterdir())[:n]):
        name = f"{random.Random(i).getrandbits(36):09x}"
        if i == 3:
            canvas = Image.new("RGB", (500, 250))
            canvas.paste(Image.open(sorted((SAMPLE / PASTED).iterdir())[0]), (0, 0))
            canvas.paste(Image.open(source), (250, 0))
            name += ".png"
            canvas.save(folder / name)
        else:
            name += source.suffix
            shutil.copyfile(source, folder / name)
        names.append(name)
    return names, names[3]


def noisy_copies(me: Path, folder: Path, skip: str) -> None:
    """Cloaked copies by "another tool" (seeded noise), written as <stem>_cloaked.png; ``skip`` gets none."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted(me.iterdir()):
        if path.name == skip:
            continue
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        noisy = np.clip(pixels + rng.normal(0, 2.0, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{path.stem}_cloaked.png")
    Image.new("RGB", (64, 64)).save(folder / "stray.png")


class Run:
    def __init__(self, folder: Path, done: subprocess.CompletedProcess[str], names: list[str], pasted: str,
                 missing: str) -> None:
        self.folder, self.done, self.names, self.pasted, self.missing = folder, done, names, pasted, missing
        self.out = done.stdout
        self.results = folder / "out" / "me-audit"

    def verdicts(self, cloak: str) -> list[str]:
        """The verdict lines under ``With <cloak>...:``."""
        block = self.out.split("== Do your cloaked photos protect you? ==", 1)[1]
        section = block.split(f"With {cloak}", 1)[1].split("\nWith ", 1)[0].split("\n\n", 1)[0]
        return [line.strip() for line in section.splitlines()[1:] if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("personal")
    names, pasted = make_me(folder / "me")
    missing = names[5]
    noisy_copies(folder / "me", folder / "cloaked", missing)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TQDM_DISABLE": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "FAWKES_EVAL_CACHE": str(folder / "cache"),
           **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}}  # a worktree's own code
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_CLI, "audit", "--me", "me", "--cloaked", "cloaked",
         "--cloak", "fawkes-v1.0:high,noise:high", "--victims", ",".join(VICTIMS), "--out", "out"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Run(folder, done, names, pasted, missing)


@pytest.mark.slow
def test_nothing_leaves_the_machine(run: Run) -> None:
    attempts = json.loads(run.out.split("ATTEMPTS ", 1)[1].splitlines()[0])
    assert attempts == [], f"tried to reach the network: {attempts}"


@pytest.mark.slow
def test_the_person_is_found_in_every_photo_and_the_pasted_face_is_not_them(run: Run) -> None:
    assert f"Found you in {len(run.names)} of {len(run.names)} photos" in run.out
    line = next(ln for ln in run.out.splitlines() if ln.strip().startswith(run.pasted + ":"))
    assert "of 2 (cropped around yours)" in line
    left = int(re.search(r"box \((\d+),", line).group(1))  # type: ignore[union-attr]
    assert left >= 250, f"chose the pasted face: {line}"
    assert "other people: 1, in 1 photo(s)" in run.out
    # the person's own identity in the crowd shares their files: left out, so it is no distractor of itself
    assert f"left out {ME} (shares" in run.out
    config = json.loads((run.results / "config.json").read_text())
    crowd = {p.name for p in Path(config["datasets"][0]["root"]).iterdir()}
    assert ME not in crowd and PASTED in crowd and "me" in crowd


@pytest.mark.slow
def test_cloaked_copies_are_matched_by_name_and_the_rest_listed(run: Run) -> None:
    assert f"Cloaked copies: {len(run.names) - 1} matched by file name" in run.out
    assert re.search(rf"photos without a cloaked copy \(left out\): {re.escape(run.missing)}\b", run.out)
    assert "cloaked files matching none of your photos (ignored): stray.png" in run.out


@pytest.mark.slow
def test_posted_and_encountered_split_is_stated(run: Run) -> None:
    posted = run.out.split("Posted (cloaked; what the trackers learned you from), seed 0, 70/30: ", 1)[1]
    posted_names = posted.splitlines()[0].split(", ")
    encountered = run.out.split("Encountered (clean; what they were shown): ", 1)[1].splitlines()[0].split(", ")
    usable = set(run.names) - {run.missing}
    assert set(posted_names) | set(encountered) == usable and not set(posted_names) & set(encountered)
    assert (len(posted_names), len(encountered)) == (5, 2)


@pytest.mark.slow
def test_verdict_names_every_victim_and_threat_with_the_baseline(run: Run) -> None:
    answer = run.out.index("== Do your cloaked photos protect you? ==")
    assert answer < run.out.index("Report: ") and answer < run.out.index("MLflow: ")
    uploads = ("", ", your uploads put through instagram-like")  # as posted, and through the upload preset
    for cloak in ("your cloaked copies", "fawkes-v1.0:high, made now through dlib-resnet-torch", "noise:high"):
        lines = run.verdicts(cloak)
        # per victim and upload: one line per tracker, and two for reverse face search (both directions)
        assert len(lines) == len(VICTIMS) * len(uploads) * (len(TRACKERS) + 2), lines
        for victim, upload in itertools.product(VICTIMS, uploads):
            mine = [ln for ln in lines if f"({victim})" in ln and (upload in ln if upload else "uploads put" not in ln)]
            for tracker in TRACKERS:
                assert sum(tracker in ln for ln in mine) == 1, (cloak, victim, upload, tracker, lines)
            assert sum(ln.startswith("Reverse face search with") for ln in mine) == 2, (cloak, victim, mine)
        for line in lines:
            if line.startswith("Reverse face search"):
                assert re.search(r"found (you|it) first in \d+ of \d+ searches \(without cloaks: \d+ of \d+\): ",
                                 line), line
            else:
                assert re.search(r"recognised you in \d of 2 clean photos \(without cloaks: \d of 2\): ", line), line
    verdicts = (run.results / "verdict.txt").read_text()
    assert verdicts.count("recognised you in") == 3 * len(VICTIMS) * len(uploads) * len(TRACKERS)
    assert verdicts.count("Reverse face search with") == 3 * len(VICTIMS) * len(uploads) * 2


@pytest.mark.slow
def test_noise_is_no_protection_and_white_box_fawkes_protects(run: Run) -> None:
    for line in run.verdicts("noise:high"):
        assert line.endswith((": no protection.", ": no protection shown (within chance of the clean result).")), line
    white_box = [ln for ln in run.verdicts("fawkes-v1.0:high")
                 if "(dlib-resnet)" in ln and "1-NN" in ln and "instagram-like" not in ln]
    assert len(white_box) == 1 and white_box[0].endswith(": protected."), white_box


@pytest.mark.slow
def test_faces_are_left_out_of_the_reports_by_default(run: Run) -> None:
    assert not (run.results / "examples").exists()
    assert "(faces left out)" in run.out
    rows = json.loads((run.results / "results.json").read_text())
    assert {r["cell"]["victim"] for r in rows} == set(VICTIMS)
    assert {r["cell"]["protected"] for r in rows} == {"me"}


@pytest.mark.slow
def test_too_few_photos_of_the_person_is_bad_input(run: Run, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # --face names the pasted stranger: they are in one photo, too few for an audit
    monkeypatch.setenv("FAWKES_EVAL_CACHE", str(run.folder / "cache"))
    line = next(ln for ln in run.out.splitlines() if ln.strip().startswith(run.pasted + ":"))
    mine = int(re.search(r"face (\d) of 2", line).group(1))  # type: ignore[union-attr]
    status = main(["audit", "--me", str(run.folder / "me"), "--face", f"{run.pasted}:{1 - mine}",
                   "--victims", "dlib-resnet", "--out", str(run.folder / "out-face")])
    err = capsys.readouterr().err
    assert status == 2
    assert "1 of your photos show your face; the audit needs at least 6" in err


def test_too_few_message_says_how_many_and_why() -> None:
    text = too_few_message(4, with_copy=True)
    assert "4 of your photos show your face and have a cloaked copy; the audit needs at least 6" in text
    assert "4 to learn from and 2 to test on" in text


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--me", str(tmp_path / "nowhere")]) == 2
    assert "not a folder of photos" in capsys.readouterr().err
    (tmp_path / "me").mkdir()
    assert main(["audit", "--me", str(tmp_path / "me"), "--cloaks", "noise:high"]) == 2
    assert "--cloaks only go with --data" in capsys.readouterr().err
    assert main(["audit", "--data", str(SAMPLE), "--cloaked", str(tmp_path)]) == 2
    assert "only go with --me" in capsys.readouterr().err


def test_crop_keeps_the_chosen_face_nearest_the_centre() -> None:
    mine, other = (300, 60, 400, 160), (120, 60, 220, 160)
    region = crop_around((500, 250), mine, [other])
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    assert region[0] <= mine[0] and region[2] >= mine[2]
    assert (350 - cx) ** 2 + (110 - cy) ** 2 < (170 - cx) ** 2 + (110 - cy) ** 2


def test_copies_pair_by_name_whatever_the_extension(tmp_path: Path) -> None:
    (tmp_path / "me").mkdir()
    (tmp_path / "cl").mkdir()
    for name in ("a.jpg", "b.png", "c.jpg"):
        Image.new("RGB", (40, 40)).save(tmp_path / "me" / name)
    Image.new("RGB", (40, 40)).save(tmp_path / "cl" / "a_cloaked.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "cl" / "b.jpg")
    Image.new("RGB", (30, 40)).save(tmp_path / "cl" / "c.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "cl" / "zzz.png")
    copies = match_copies(tmp_path / "me", tmp_path / "cl")
    assert sorted(copies.copies) == ["a.jpg", "b.png"]
    assert copies.unmatched == ("zzz.png",)
    assert len(copies.resized) == 1 and copies.resized[0].startswith("c.jpg")
