"""The batch on Ray Data: parts as rows, ``map_batches`` over actors that each hold one loaded model.

The pattern Ray documents for batch inference: a dataset of parts (one row and one block each, so results
stream back part by part), a pool of actors (``PartSegmenter``) that load the checkpoint once in their
constructor and then segment part after part, writing each part's GeoPackage from inside the cluster; the driver
records each outcome in the manifest as it arrives and merges at the end.

Resources: with GPUs in the cluster, one actor per GPU (``num_gpus=1``, one CPU each for reading). Without,
CPU actors whose CPUs and torch threads add up to the cluster's CPUs less one, so actors never oversubscribe the
cores and Ray's own tasks (block splitting, the driver's iterator) still get a CPU: on ``ray.init(num_cpus=2)``
two actors take 0.5 CPU and 1 thread each.

Fault tolerance: a killed actor (its process died, its node was lost) is restarted by Ray up to ``RETRIES``
times, and each part it was running is retried up to ``RETRIES`` times on a live actor. A part that fails inside
the engine (bad raster, out of memory) is not retried: it is recorded as failed with its error.

The cluster must see the same paths as the driver: the inputs, the checkpoint and the output folder (a shared
file system, or object storage mounted at the same path; the inputs must be files there, so COGs on object
storage are reached through a VRT on that file system whose sources are GDAL ``/vsis3/`` paths: see
``docs/scale.md``). The ``backend`` package travels to the workers with the job (``job_runtime_env``); its
dependencies must be installed there.
Ray is imported here only, and only when a run asks for it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.batch.plan import Part
from backend.batch.work import BatchSettings, PartWorker
from backend.errors import BackendError, counted

# How many times Ray restarts a killed actor, and retries a part whose actor died while running it.
RETRIES = 3
# Torch threads beyond which one actor gains little (``backend.environment.variables``): more CPUs make more
# actors instead.
THREADS_PER_ACTOR = 4


@dataclass(frozen=True)
class ActorPlan:
    """How many model-holding actors run, and what each takes.

    Attributes:
        actors: the pool's size.
        num_cpus: CPUs Ray reserves for each actor (fractional on small machines).
        num_gpus: GPUs per actor (1 with GPUs, else 0).
        threads: torch CPU threads per actor.
    """

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int


def plan_actors(cpus: float, gpus: float, actors: int | None = None) -> ActorPlan:
    """The actor pool for a cluster with ``cpus`` CPUs and ``gpus`` GPUs in all.

    Args:
        cpus, gpus: the cluster's resources (``ray.cluster_resources()``).
        actors: the pool size asked for (None: one per GPU, else one per ``THREADS_PER_ACTOR`` spare CPUs).

    Returns:
        The plan; CPU actors' CPUs add up to the cluster's CPUs less one (at least half of them).
    """
    if actors is not None and actors < 1:
        raise BackendError("bad_request", f"--actors {actors} is not usable", "give at least 1 actor")
    spare = max(cpus - 1.0, cpus / 2.0)  # one CPU stays free for Ray's tasks and the driver's iterator
    if gpus >= 1:
        count = actors or int(gpus)
        per_actor = min(1.0, spare / count)
        return ActorPlan(actors=count, num_cpus=per_actor, num_gpus=1.0,
                         threads=max(1, min(THREADS_PER_ACTOR, math.floor(spare / count))))
    count = actors or max(1, math.floor(spare / THREADS_PER_ACTOR))
    per_actor = spare / count
    return ActorPlan(actors=count, num_cpus=per_actor, num_gpus=0.0, threads=max(1, math.floor(per_actor)))


class PartSegmenter:
    """A Ray Data actor: loads the model once, then segments the parts of each batch of rows it is given."""

    def __init__(self, settings: dict, parts_dir: str, threads: int) -> None:
        self.worker = PartWorker(BatchSettings.from_dict(settings), parts_dir, threads=threads)

    def __call__(self, batch: dict) -> dict:
        """Args:
            batch: {"part": (B,) JSON texts of ``Part`` dicts}.

        Returns:
            {"outcome": (B,) JSON texts of the parts' outcomes}.
        """
        import numpy as np

        outcomes = [json.dumps(self.worker.run(Part.from_dict(json.loads(text)))) for text in batch["part"]]
        return {"outcome": np.array(outcomes, dtype=object)}


def job_runtime_env() -> dict:
    """The job's ``runtime_env``: this ``backend`` package travels to every worker (``py_modules``), so actors
    run the driver's code whatever is installed on the nodes. A process that calls ``ray.init`` itself (a test,
    a notebook) passes this to it."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])]}


def _connect(address: str) -> None:
    """Join the cluster at ``address`` ("local": start one on this machine) unless this process already has."""
    try:
        import ray
    except ImportError as err:
        hint = 'install the cluster extra: pip install -e ".[cluster]" (or rerun scripts/setup.sh)'
        raise BackendError("bad_request", "--ray needs Ray, which is not installed", hint) from err
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, runtime_env=job_runtime_env())
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise BackendError("bad_request", f"cannot join the Ray cluster at {address!r}: {err}",
                           "give the head node's address (e.g. --ray ray://head:10001 or --ray auto on a node of "
                           "the cluster), or --ray local") from err


def run_ray(address: str, parts: list[Part], settings: BatchSettings, parts_dir: str,
            record: Callable[[dict], None], actors: int | None = None, show_progress: bool = True) -> ActorPlan:
    """Segment ``parts`` on Ray Data, calling ``record(outcome)`` in this process as each part's result arrives.

    Args:
        address: a Ray address ("auto", "ray://head:10001", …) or "local" for a Ray started here.
        parts: the parts still to do.
        settings: the batch's settings.
        parts_dir: where the actors write part outputs (a folder every node can write).
        record: stores an outcome (the manifest's ``record``).
        actors: the actor pool's size (None: see ``plan_actors``).
        show_progress: show Ray Data's progress bars.

    Returns:
        The actor plan the run used.
    """
    _connect(address)
    import ray

    resources = ray.cluster_resources()
    plan = plan_actors(resources.get("CPU", 1.0), resources.get("GPU", 0.0), actors)
    if not parts:
        return plan
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = show_progress
    rows = [{"part": json.dumps(p.to_dict())} for p in parts]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        PartSegmenter, batch_size=1, compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
        fn_constructor_kwargs={"settings": settings.to_dict(), "parts_dir": parts_dir, "threads": plan.threads},
        max_restarts=RETRIES, max_task_retries=RETRIES)
    print(f"ray: {counted(len(parts), 'part')} on {counted(plan.actors, 'actor')}, {plan.num_cpus:g} CPU, "
          f"{plan.num_gpus:g} GPU and {counted(plan.threads, 'thread')} each", file=sys.stderr)
    for row in dataset.iter_rows():
        record(json.loads(row["outcome"]))
    return plan
