"""Campaign files: the schema, its errors (file, line and field), path confinement, the grid, and the CLI's
``validate`` and ``run --dry-run``; plus the on-disk array store that the caches rely on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from fawkes_eval.cache import ArrayStore
from fawkes_eval.campaign import CampaignError, check_components, load_campaign
from fawkes_eval.cli import main
from fawkes_eval.rooms import load_rooms

VALID = """\
study: tests
campaign: small
datasets:
  - name: lfw-sample
    root: "bundled:lfw_sample"
protected:
  users: [Laura_Bush]
grid:
  cloaks: [fawkes-v1.0:low, noise:low]
  surrogates: [dlib-resnet-torch, [dlib-resnet-torch, mobileface]]
  victims: [dlib-resnet, mobileface]
  trackers: [1nn]
  leak_ratios: [0.0, 0.25]
  seeds: [0, 1, 2]
protocol:
  n_boot: 200
"""


def write(tmp_path: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_campaign_expands_to_the_full_grid(tmp_path: Path) -> None:
    campaign = load_campaign(write(tmp_path, VALID))
    cells = campaign.cells()
    assert len(cells) == 2 * 2 * 2 * 1 * 1 * 2 * 3
    assert len({(c.cloak, c.surrogates, c.victim, c.leak_ratio, c.seed) for c in cells}) == len(cells)
    assert campaign.grid.surrogates == (("dlib-resnet-torch",), ("dlib-resnet-torch", "mobileface"))
    assert campaign.protected.users == ("Laura_Bush",)
    assert campaign.datasets[0].root.is_dir() and campaign.datasets[0].root.is_absolute()
    # cells sharing a cloaking run are adjacent, so a local run cloaks each group once
    groups = [(c.seed, c.cloak, c.surrogates) for c in cells]
    assert groups == sorted(groups, key=groups.index)
    # the same content gives the same fingerprint, wherever the file lies; a changed grid does not
    again = load_campaign(write(tmp_path, VALID, "copy.yaml"))
    assert again.fingerprint() == campaign.fingerprint()
    changed = load_campaign(write(tmp_path, VALID.replace("noise:low", "noise:mid"), "changed.yaml"))
    assert changed.fingerprint() != campaign.fingerprint()


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("  trackers: [1nn]", "  trackerz: [1nn]", 12, "grid.trackerz: unknown field"),
        ("  seeds: [0, 1, 2]", "  seeds: [0, one, 2]", 14, "grid.seeds[1]: expected an integer >= 0"),
        ("  leak_ratios: [0.0, 0.25]", "  leak_ratios: [0.0, 1.5]", 13, "grid.leak_ratios[1]: expected a number in [0, 1)"),
        ("  n_boot: 200", "  n_boot: 10", 16, "protocol.n_boot: expected an integer >= 100"),
        ("  victims: [dlib-resnet, mobileface]", "  victims: []", 11, "grid.victims: expected a non-empty list"),
        ("campaign: small", "campaign: my campaign", 2, "campaign: 'my campaign' must be letters"),
        ("  cloaks: [fawkes-v1.0:low, noise:low]", "  cloaks: [noise:low, noise:low]", 9,
         "grid.cloaks[1]: 'noise:low' is listed twice"),
        ('    root: "bundled:lfw_sample"', '    root: "bundled:../../runner.py"', 5, "datasets[0].root: '"),
        ('    root: "bundled:lfw_sample"', "    root: /etc", 5, "datasets[0].root: absolute path '/etc' not allowed"),
        ('    root: "bundled:lfw_sample"', '    root: "elsewhere:images"', 5, "datasets[0].root: unknown root 'elsewhere'"),
        ('    root: "bundled:lfw_sample"', "    root: ../outside", 5, "datasets[0].root: '../outside' resolves to"),
        ("  users: [Laura_Bush]", "  users: [Laura_Bush]\n  count: 3", 8, "protected.count: give either users or count"),
        ("  n_boot: 200", "  n_boot: 200\n  n_boot: 300", 17, "protocol.n_boot: field given twice"),
        ("grid:", "outputs: {dir: /tmp/x}\ngrid:", 8, "outputs.dir: must be a relative path"),
        ("  trackers: [1nn]", "  trackers: [1nn", 13, "not valid YAML"),
    ],
)
def test_schema_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert str(info.value).startswith(f"{path.resolve()}:{line}: ")
    assert message in str(info.value)


def test_missing_required_field_names_its_parent(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  victims: [dlib-resnet, mobileface]\n", ""))
    with pytest.raises(CampaignError, match=r":8: grid: missing required field 'victims'"):
        load_campaign(path)


def test_declared_roots_confine_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "subset.txt").write_text("")
    escape = tmp_path / "data" / "images" / "link"
    escape.symlink_to(tmp_path.parent)  # a symlink leading out of the root is refused too
    text = VALID.replace('    root: "bundled:lfw_sample"\n', "    root: mine:images\n    subset: mine:subset.txt\n")
    campaign_dir = tmp_path / "campaigns"
    campaign_dir.mkdir()
    path = write(campaign_dir, "roots:\n  mine: ../data\n" + text)
    campaign = load_campaign(path)
    assert campaign.datasets[0].root == (data / "images").resolve()
    assert campaign.datasets[0].subset == (data / "subset.txt").resolve()
    bad = write(campaign_dir, "roots:\n  mine: ../data\n" + text.replace("mine:images", "mine:images/link"), "bad.yaml")
    with pytest.raises(CampaignError, match=r"bad.yaml:7: datasets\[0\].root: .* outside its root"):
        load_campaign(bad)


def test_unregistered_components_are_named_with_their_line(tmp_path: Path) -> None:
    load_rooms()
    campaign = load_campaign(write(tmp_path, VALID.replace("victims: [dlib-resnet, mobileface]",
                                                           "victims: [dlib-resnet, facenet-9000]")))
    with pytest.raises(CampaignError, match=r"campaign.yaml:11: grid.victims\[1\]: unknown extractor 'facenet-9000'"):
        check_components(campaign)
    campaign = load_campaign(write(tmp_path, VALID.replace("fawkes-v1.0:low", "fawkes-v1.0:extreme")))
    with pytest.raises(CampaignError, match=r":9: grid.cloaks\[0\]: cloak 'fawkes-v1.0' has no mode 'extreme'"):
        check_components(campaign)


def test_validate_and_dry_run_list_cells_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, VALID)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "48 cells = 1 dataset x 3 seeds x 2 cloaks x 2 surrogate sets x 2 victims x 1 tracker" in out
    assert out.count("  cell  ") == 48 and "estimate: 48 cell(s) to run: 12 cloaking run(s)" in out
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("  todo  ") == 48
    assert not (tmp_path / "fawkes-eval-out").exists() and not (tmp_path / "mlflow.db").exists()  # nothing ran
    bad = write(tmp_path, VALID.replace("noise:low", "noise:loud"), "bad.yaml")
    assert main(["validate", str(bad)]) == 2
    assert "bad.yaml:9: grid.cloaks[1]: cloak 'noise' has no mode 'loud'" in capsys.readouterr().err


def test_array_store_verifies_what_it_reads(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path, "kind")
    arrays = {"faces": np.arange(12, dtype=np.float32).reshape(2, 2, 3), "seconds": np.array(1.5)}
    store.put("ab" * 32, arrays)
    got = store.get("ab" * 32)
    assert got is not None and np.array_equal(got["faces"], arrays["faces"]) and float(got["seconds"]) == 1.5
    assert store.get("cd" * 32) is None
    path = store.path("ab" * 32)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a damaged entry reads as missing, never as wrong numbers
    path.write_bytes(bytes(blob))
    assert store.get("ab" * 32) is None
    with pytest.raises(ValueError, match="object arrays"):
        store.put("ef" * 32, {"x": np.array([object()], dtype=object)})
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files behind
