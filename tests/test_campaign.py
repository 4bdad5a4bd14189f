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
  surrogates: [dlib-resnet-torch, [hse-faceres, hse-faceres-deep]]
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
    load_rooms()
    campaign = load_campaign(write(tmp_path, VALID))
    cells = campaign.cells()
    # fawkes-v1.0:low once per surrogate set, the noise control (no surrogates) once: 3 x victims x leaks x seeds
    assert len(cells) == 3 * 2 * 1 * 2 * 3
    assert len({(c.cloak, c.surrogates, c.victim, c.leak_ratio, c.seed) for c in cells}) == len(cells)
    assert {c.surrogates for c in cells if c.cloak.name == "noise:low"} == {()}
    assert {c.scenario.name for c in cells} == {"protection"}  # the default scenario axis
    assert campaign.grid.surrogates == (("dlib-resnet-torch",), ("hse-faceres", "hse-faceres-deep"))
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
    assert "36 cells from 1 dataset x 3 seeds x 1 scenario x 2 cloaks x 2 surrogate sets x 2 victims x 1 tracker" in out
    assert "(not crossed with the surrogate sets: noise:low)" in out
    assert out.count("  cell  ") == 36 and "estimate: 36 cell(s) to run: 9 cloaking run(s)" in out
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("  todo  ") == 36
    assert not (tmp_path / "fawkes-eval-out").exists() and not (tmp_path / "mlflow.db").exists()  # nothing ran
    bad = write(tmp_path, VALID.replace("noise:low", "noise:loud"), "bad.yaml")
    assert main(["validate", str(bad)]) == 2
    assert "bad.yaml:9: grid.cloaks[1]: cloak 'noise' has no mode 'loud'" in capsys.readouterr().err


def test_validate_refuses_surrogate_sets_a_cloak_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fawkes optimises one aligned crop: surrogates of two templates pass the schema but would fail every cell."""
    mixed = write(tmp_path, VALID.replace("[hse-faceres, hse-faceres-deep]", "[mobileface, hse-faceres]"))
    assert main(["validate", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert f"{mixed}:10: grid.surrogates[1]: with grid.cloaks[0] (fawkes-v1.0:low)" in err
    assert "mobileface (arcface-112), hse-faceres (arcface-224)" in err
    not_differentiable = write(tmp_path, VALID.replace("[hse-faceres, hse-faceres-deep]", "[dlib-resnet]"), "nd.yaml")
    assert main(["validate", str(not_differentiable)]) == 2
    assert "needs differentiable surrogates; not differentiable: dlib-resnet" in capsys.readouterr().err


def test_grid_entries_take_options_checked_against_the_components_config(tmp_path: Path) -> None:
    from fawkes_eval.plan import plan_campaign

    load_rooms()
    with_options = VALID.replace("cloaks: [fawkes-v1.0:low, noise:low]",
                                 "cloaks: [fawkes-v1.0:low, {name: fawkes-v1.0:low, steps: 7}, noise:low]")
    campaign = load_campaign(write(tmp_path, with_options))
    check_components(campaign)
    plan = plan_campaign(campaign)
    configs = [t.config for t in plan.tasks if t.config["cloak"] == "fawkes-v1.0:low"]
    assert {json_key(c["cloak_options"]) for c in configs} == {"{}", '{"steps": 7}'}
    assert len({t.key for t in plan.tasks}) == len(plan.tasks)  # the options enter the cell key
    assert any("fawkes-v1.0:low{steps=7}" in t.label for t in plan.tasks)
    # an unknown option names the file, the line and what the component takes
    typo = load_campaign(write(tmp_path, with_options.replace("steps: 7", "stepz: 7"), "typo.yaml"))
    with pytest.raises(CampaignError, match=r"typo.yaml:9: grid.cloaks\[1\]: cloak 'fawkes-v1.0:low': unknown "
                                            r"option\(s\) stepz; its options: th, steps, lr"):
        check_components(typo)
    # a value the config refuses
    refused = load_campaign(write(tmp_path, with_options.replace("steps: 7", "steps: 0"), "refused.yaml"))
    with pytest.raises(CampaignError, match=r"refused.yaml:9: .*FawkesV1Config.steps must be an integer >= 1"):
        check_components(refused)
    # a component without a config takes no options
    no_options = load_campaign(write(tmp_path, VALID.replace("trackers: [1nn]", "trackers: [{name: 1nn, k: 3}]"),
                                     "tracker.yaml"))
    with pytest.raises(CampaignError, match=r"grid.trackers\[0\]: tracker '1nn' takes no options, got: k"):
        check_components(no_options)


def json_key(options: object) -> str:
    import json

    return json.dumps(options, sort_keys=True)


def test_external_entries_take_confined_folders(tmp_path: Path) -> None:
    load_rooms()
    for folder in ("data/clean", "data/cloaked"):
        (tmp_path / folder).mkdir(parents=True)
    text = "roots:\n  data: data\n" + VALID.replace(
        "cloaks: [fawkes-v1.0:low, noise:low]",
        'cloaks: [{name: external, clean_dir: "data:clean", cloaked_dir: "data:cloaked"}]')
    campaign = load_campaign(write(tmp_path, text))
    check_components(campaign)
    options = campaign.grid.cloaks[0].options_dict()
    assert options == {"clean_dir": str(tmp_path / "data/clean"), "cloaked_dir": str(tmp_path / "data/cloaked")}
    assert {c.surrogates for c in campaign.cells()} == {()}  # another tool's cloak uses none of our surrogates
    escape = text.replace('"data:cloaked"', '"data:../../etc"')
    with pytest.raises(CampaignError, match=r"grid.cloaks\[0\].cloaked_dir: .* outside its root"):
        load_campaign(write(tmp_path, escape, "escape.yaml"))
    missing = load_campaign(write(tmp_path, text.replace('"data:cloaked"', '"data"').replace(
        '"data:clean"', '"nowhere"'), "missing.yaml"))
    with pytest.raises(CampaignError, match=r"grid.cloaks\[0\]: cloak 'external': .*clean_dir: 'nowhere' is not a "
                                            r"directory"):
        check_components(missing)


def test_scenarios_axis_and_its_protocol_alias(tmp_path: Path) -> None:
    load_rooms()
    alias = load_campaign(write(tmp_path, VALID.replace("protocol:\n", "protocol:\n  scenario: protection\n")))
    axis = load_campaign(write(tmp_path, VALID.replace("grid:\n", "grid:\n  scenarios: [protection]\n"), "axis.yaml"))
    assert alias.grid.scenarios == axis.grid.scenarios and alias.fingerprint() == axis.fingerprint()
    both = VALID.replace("grid:\n", "grid:\n  scenarios: [protection]\n").replace("protocol:\n",
                                                                                  "protocol:\n  scenario: protection\n")
    with pytest.raises(CampaignError, match="give grid.scenarios or protocol.scenario"):
        load_campaign(write(tmp_path, both, "both.yaml"))
    unknown = load_campaign(write(tmp_path, VALID.replace("grid:\n", "grid:\n  scenarios: [stalking]\n"), "u.yaml"))
    with pytest.raises(CampaignError, match=r"u.yaml:9: grid.scenarios\[0\]: unknown scenario 'stalking'"):
        check_components(unknown)


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


def test_list_verb_shows_every_registry_with_modes_options_and_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "cloaks"]) == 0
    out = capsys.readouterr().out
    assert "none: Clean baseline" in out and "fawkes-v1.0:low, fawkes-v1.0:mid, fawkes-v1.0:high" in out
    assert "steps (set by the mode)" in out and "clean_dir (required)" in out and "declares: whole_photos" in out
    assert main(["list", "scenarios"]) == 0
    assert "protection: Fawkes' protection protocol" in capsys.readouterr().out
    assert main(["list", "countermeasures"]) == 0
    assert "jpeg:95, jpeg:75, jpeg:50, jpeg:30, jpeg:10" in capsys.readouterr().out
    assert main(["list", "reports"]) == 0
    assert "file: report.html" in capsys.readouterr().out


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "campaigns").glob("*.yaml"))
SHARED_LFW = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lfw"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_campaign_validates(path: Path) -> None:
    """The example campaigns stay true to the registries and their options (the README points at each)."""
    text = path.read_text()
    if "shared/data/lfw" in text and not SHARED_LFW.is_dir():
        pytest.skip(f"{path.name} reads LFW at ../shared/data/lfw beside the checkout, which is absent here")
    if "cloaked-lfw-sample" in text and not (path.parent.parent / "cloaked-lfw-sample").is_dir():
        pytest.skip(f"{path.name} audits the folder the cloak verb writes first (its header says how)")
    load_rooms()
    campaign = load_campaign(path)
    check_components(campaign)
    assert campaign.cells()
