"""Planning a campaign: its cells with their resolved configurations and keys, and what they will cost.

Nothing here loads a model or reads a photo beyond hashing the datasets' files: ``validate`` and ``--dry-run``
show the plan before anything runs. A cell's key is the hash of its resolved configuration (``CellConfig``);
cells that share a cloaking run (dataset, seed, scenario, cloak, surrogates, protected users) share a group key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fawkes_eval import console
from fawkes_eval.campaign import NO_COUNTERMEASURE, Campaign, Cell, ProtectedSpec
from fawkes_eval.components import component_config, uses_surrogates, victim_adaptation
from fawkes_eval.data import Dataset, load_dataset
from fawkes_eval.registry import SCENARIOS
from fawkes_eval.results import CellConfig, config_hash
from fawkes_eval.types import Scenario


@dataclass(frozen=True)
class CellTask:
    """A cell as a worker receives it: the cell, its resolved configuration (the row's ``cell``) and keys."""

    cell: Cell
    config: Mapping[str, Any]  # a CellConfig; config_hash(config) == ResultRow.key == MLflow tag fe.config_hash
    key: str
    group: str  # key of the cloaking run this cell shares with others
    needs_gpu: bool  # its cloak optimises through networks

    @property
    def label(self) -> str:
        return self.cell.label


@dataclass
class CampaignPlan:
    campaign: Campaign
    datasets: dict[str, Dataset]
    tasks: list[CellTask]


def protected_label(spec: ProtectedSpec) -> str:
    return ",".join(spec.users) if spec.users else f"random {spec.count}"


def cell_config(campaign: Campaign, cell: Cell, dataset: Dataset, public_sha256: str | None = None) -> CellConfig:
    """``public_sha256``: the manifest of an adaptive victim's public photos, which enters its options (and so the
    cell's key): other public photos, another cell."""
    p = campaign.protocol
    victim_options = cell.victim.options_dict()
    if public_sha256 is not None:
        victim_options["public_sha256"] = public_sha256
    return CellConfig(
        scenario=cell.scenario.name, scenario_options=cell.scenario.options_dict(),
        dataset=cell.dataset, dataset_sha256=dataset.manifest_hash(),
        alignment=campaign.dataset(cell.dataset).alignment,
        cloak=cell.cloak.name, cloak_options=cell.cloak.options_dict(), surrogates=",".join(cell.surrogates),
        victim=cell.victim.name, victim_options=victim_options,
        tracker=cell.tracker.name, tracker_options=cell.tracker.options_dict(),
        countermeasure=cell.countermeasure.label,
        countermeasure_side=p.countermeasure_side if cell.countermeasure.name != NO_COUNTERMEASURE else "",
        leak_ratio=cell.leak_ratio, seed=cell.seed, protected=protected_label(campaign.protected),
        train_fraction=p.train_fraction, n_boot=p.n_boot, topk=p.topk,
    )


_GROUP_AXES = ("scenario", "scenario_options", "dataset_sha256", "cloak", "cloak_options", "surrogates", "seed",
               "protected", "train_fraction")


def plan_campaign(campaign: Campaign) -> CampaignPlan:
    """Hash the datasets and resolve every cell's configuration and key (no model is loaded)."""
    datasets = {d.name: load_dataset(d.root, d.subset, d.name) for d in campaign.datasets}
    public: dict[str, str] = {}  # an adaptive victim's public photos -> their manifest hash
    for victim in campaign.grid.victims:
        adaptation = victim_adaptation(victim)
        if adaptation is not None and victim.label not in public:
            where = adaptation.public
            public[victim.label] = (datasets[where] if isinstance(where, str) else load_dataset(
                where["root"], where.get("subset"))).manifest_hash()
    tasks = []
    for cell in campaign.cells():
        config = cell_config(campaign, cell, datasets[cell.dataset], public.get(cell.victim.label))
        group = config_hash({k: config[k] for k in _GROUP_AXES})  # type: ignore[literal-required]
        tasks.append(CellTask(cell, config, config_hash(dict(config)), group, uses_surrogates(cell.cloak.name)))
    return CampaignPlan(campaign, datasets, tasks)


def create_scenario(cell: Cell) -> Scenario:
    """The cell's scenario object, configured by its grid entry's options."""
    config = component_config(SCENARIOS, cell.scenario.name, cell.scenario.options_dict())
    return SCENARIOS.create(cell.scenario.name, **({"config": config} if config is not None else {}))


# --- what a plan will cost ------------------------------------------------------------------------------------

# Rough rates on 2 CPU cores, to size a campaign before it runs (a GPU cloaks ~50x faster): DESIGN.md's calibration
# of Fawkes v1.0 at mid (about 1 s per image, batch 14) and the zoo's embedding speed measured on this class of
# machine (dlib ResNet-29, about 0.05 s per photo including alignment). Caches make reruns far cheaper.
SECONDS_PER_CLOAKED_PHOTO = 1.0
SECONDS_PER_CONTROL_PHOTO = 0.02
SECONDS_PER_EMBEDDED_PHOTO = 0.05


@dataclass(frozen=True)
class CostEstimate:
    cells: int
    cloaking_runs: int
    photos_to_cloak: int
    photos_to_embed: int
    seconds: float

    def describe(self) -> str:
        return (f"{self.cells} cell(s) to run: {self.cloaking_runs} cloaking run(s), ~{self.photos_to_cloak} photos to "
                f"cloak, ~{self.photos_to_embed} photo embeddings; roughly {self.seconds / 60:.1f} min on 2 CPU cores "
                "without caches (at most; cached work is not repeated)")


def estimate_cost(plan: CampaignPlan, tasks: Sequence[CellTask]) -> CostEstimate:
    """Upper-bound work of ``tasks``, from image counts of the datasets' manifests, each scenario's own estimate
    (``Scenario.cost``) and the rates above. Embeddings are counted once per (group, victim, countermeasure)."""
    c = plan.campaign
    counts: dict[str, tuple[int, int]] = {}
    for name, dataset in plan.datasets.items():
        per_identity = {i: len(r) for i, r in dataset.by_identity().items()}
        users = c.protected.users or sorted(per_identity, key=per_identity.__getitem__)[-c.protected.count:]
        train = sum(round(c.protocol.train_fraction * per_identity.get(u, 0)) for u in users)
        counts[name] = (train, sum(per_identity.get(u, 0) for u in users) - train)
    scenarios: dict[str, Scenario] = {}
    cloak, embed, seconds = {}, {}, 0.0
    for t in tasks:
        label = t.cell.scenario.label
        if label not in scenarios:
            scenarios[label] = create_scenario(t.cell)
        train, test = counts[t.cell.dataset]
        cost = scenarios[label].cost(len(plan.datasets[t.cell.dataset].records), train, test)
        cloak[t.group] = (cost.photos_to_cloak, t.needs_gpu)
        embed[(t.group, t.cell.victim.label, t.cell.countermeasure.label)] = cost.photos_to_embed
    for photos, optimises in cloak.values():
        seconds += photos * (SECONDS_PER_CLOAKED_PHOTO if optimises else SECONDS_PER_CONTROL_PHOTO)
    seconds += sum(embed.values()) * SECONDS_PER_EMBEDDED_PHOTO
    return CostEstimate(len(tasks), len(cloak), sum(p for p, _ in cloak.values()), sum(embed.values()), seconds)


def describe_plan(plan: CampaignPlan, results_dir: Path | None, stream: TextIO | None = None) -> list[CellTask]:
    """Print the grid, each cell (with done / todo when ``results_dir`` is given) and the cost; returns the todo."""
    from fawkes_eval.workspace import read_cell

    stream = stream or sys.stdout
    c = plan.campaign
    g = c.grid
    axes = [(len(c.datasets), "dataset"), (len(g.seeds), "seed"), (len(g.scenarios), "scenario"),
            (len(g.cloaks), "cloak"), (len(g.surrogates), "surrogate set"), (len(g.victims), "victim"),
            (len(g.trackers), "tracker"), (len(g.countermeasures), "countermeasure"), (len(g.leak_ratios), "leak ratio")]

    def say(message: str) -> None:
        console.say(stream, message)

    say(f"campaign {c.name} (MLflow experiment {c.study!r}){f' from {c.source}' if c.source else ''}")
    free = [e.label for e in g.cloaks if not uses_surrogates(e.name)]
    say(f"{len(plan.tasks)} cells from " + " x ".join(f"{n} {what}{'s' if n > 1 else ''}" for n, what in axes)
        + (f" (not crossed with the surrogate sets: {', '.join(free)})" if free and len(g.surrogates) > 1 else ""))
    for name, dataset in plan.datasets.items():
        say(f"dataset {name}: {len(dataset.records)} images, {len(dataset.identities)} identities, "
            f"manifest sha256 {dataset.manifest_hash()[:12]} ({dataset.root})")
    say(f"protected: {protected_label(c.protected)}; scenarios: {', '.join(e.label for e in g.scenarios)}; train "
        f"fraction {c.protocol.train_fraction:g}, {c.protocol.n_boot} bootstrap resamples")
    todo = []
    for task in plan.tasks:
        done = results_dir is not None and read_cell(results_dir, task.key) is not None
        status = "done" if done else ("todo" if results_dir is not None else "cell")
        if not done:
            todo.append(task)
        say(f"  {status}  {task.key}  {task.label}")
    say("estimate: " + estimate_cost(plan, todo).describe())
    return todo

