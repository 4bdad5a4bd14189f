"""Where a campaign's cells run: in this process (default) or as Ray tasks on a cluster.

An executor gets the unfinished cells, two module-level functions and a context: ``prepare(task, context)``
does the work a group of cells shares (cloaking the protected users' photos, which fills the on-disk cache) and
``execute(task, context)`` computes one cell, writes it to disk, logs it to MLflow and returns its row. Both
executors call the same functions, so they give the same numbers; they differ only in where the calls happen.
Each finished (or failed) cell is reported through ``on_done`` as soon as it is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fawkes_eval.results import ResultRow


class Job(Protocol):
    """What an executor needs to know of a cell (``fawkes_eval.runner.CellTask``)."""

    @property
    def key(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def needs_gpu(self) -> bool: ...


class Context(Protocol):
    """What an executor needs to know of the run (``fawkes_eval.runner.RunContext``)."""

    @property
    def torch_threads(self) -> int: ...


Prepare = Callable[[Any, Any], None]
Execute = Callable[[Any, Any], ResultRow]
OnDone = Callable[[Any, "ResultRow | BaseException"], None]


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], prepare: Prepare, execute: Execute, context: Context, on_done: OnDone) -> None: ...


class LocalExecutor:
    """Cells one after another in this process; the runner orders them so that a group's cells are adjacent."""

    name = "local"

    def run(self, jobs: Sequence[Job], prepare: Prepare, execute: Execute, context: Context, on_done: OnDone) -> None:
        for job in jobs:
            try:
                row = execute(job, context)
            except Exception as e:  # a failed cell is reported and the campaign goes on
                on_done(job, e)
            else:
                on_done(job, row)


def _execute_after(execute: Execute, job: Job, context: Context, _group_ready: None) -> ResultRow:
    """A cell task: Ray passes it the group's result, so it starts only after its photos are cloaked."""
    return execute(job, context)


class RayExecutor:
    """Cells as Ray tasks: one task per cloaking group (with a GPU when its cloak optimises through networks and
    the cluster has GPUs), then one task per cell depending on it. Workers log to MLflow themselves, so the
    tracking URI must reach them (a shared ``mlflow server`` on a cluster) and the cache and output folders
    must be on storage they share.

    ``address``: an existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local
    instance for the duration of the run, with ``num_cpus`` CPUs (None: all).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def run(self, jobs: Sequence[Job], prepare: Prepare, execute: Execute, context: Context, on_done: OnDone) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, num_cpus=self.num_cpus if self.address is None else None,
                     include_dashboard=False, log_to_driver=False)
        try:
            self._run(ray, jobs, prepare, execute, context, on_done)
        finally:
            if started_here:
                ray.shutdown()

    @staticmethod
    def _run(ray: Any, jobs: Sequence[Job], prepare: Prepare, execute: Execute, context: Context, on_done: OnDone) -> None:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        prepare_task = ray.remote(prepare)
        cell_task = ray.remote(_execute_after)
        context_ref = ray.put(context)
        groups: dict[str, Any] = {}
        pending: dict[Any, Job] = {}
        # each task computes with this many threads: reserve them, within what the largest node has
        largest_node = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
        cpus = max(1, min(context.torch_threads, int(largest_node)))
        for job in jobs:
            if job.group not in groups:
                gpus = 1 if job.needs_gpu and has_gpus else 0
                groups[job.group] = prepare_task.options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(
                    job, context_ref)
            ref = cell_task.options(num_cpus=cpus, max_retries=0).remote(execute, job, context_ref, groups[job.group])
            pending[ref] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as e:  # RayTaskError wraps the cell's own exception
                    on_done(job, getattr(e, "cause", None) or e)
                else:
                    on_done(job, row)


def make_executor(name: str, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise ValueError("--address is for --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {name!r}; executors: local, ray")
