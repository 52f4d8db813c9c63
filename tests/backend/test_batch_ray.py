"""The batch on a local Ray (``ray.init(num_cpus=2)``, 2 actors) against the same batch run in one process.

Inputs: a GDAL VRT of 4 copies of the sample (4 parts) and 3 separate copies; the bundled demo model. Skipped
where Ray is not installed (the optional ``cluster`` extra has wheels for some Pythons only).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray (the cluster extra) is not installed for this Python")

from backend.batch.manifest import MANIFEST_NAME  # noqa: E402
from backend.batch.ray_data import RETRIES, job_runtime_env, plan_actors  # noqa: E402
from backend.batch.run import run_batch  # noqa: E402
from backend.batch.work import BatchSettings  # noqa: E402
from tests.backend.batch_inputs import (  # noqa: E402
    DEMO,
    PART_SIZE,
    PHRASES,
    RESOLUTION,
    assert_same_polygons,
    make_inputs,
)

SETTINGS = BatchSettings(phrases=PHRASES, mode="find-all", resolution=RESOLUTION, checkpoint=str(DEMO),
                         device="cpu", part_size=PART_SIZE)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=job_runtime_env())
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return make_inputs(tmp_path_factory.mktemp("ray-inputs"))


@pytest.fixture(scope="module")
def local_merged(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("ray-local") / "out"
    summary = run_batch(inputs, SETTINGS, str(out), show_progress=False)
    assert summary["done"] == 7
    return summary["merged"]["gpkg"]


def _entries(out: Path) -> list[dict]:
    return json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["parts"]


def test_actor_plan_leaves_a_cpu_for_rays_tasks() -> None:
    assert plan_actors(2, 0, 2) == plan_actors(2, 0, 2).__class__(actors=2, num_cpus=0.5, num_gpus=0.0, threads=1)
    sixteen = plan_actors(16, 0)
    assert sixteen.actors * sixteen.num_cpus == 15 and sixteen.actors * sixteen.threads <= 15
    gpus = plan_actors(32, 4)
    assert (gpus.actors, gpus.num_gpus, gpus.num_cpus) == (4, 1.0, 1.0)


def test_ray_run_merges_the_same_polygons_as_the_local_run(cluster, inputs, local_merged, tmp_path: Path) -> None:
    summary = run_batch(inputs, SETTINGS, str(tmp_path / "out"), ray="local", actors=2, show_progress=False)
    assert summary["done"] == 7 and summary["failed"] == 0 and summary["runner"] == "ray local"
    assert len({e["worker"] for e in _entries(tmp_path / "out")}) == 2  # both actors did parts
    assert_same_polygons(summary["merged"]["gpkg"], local_merged)


def test_a_killed_actor_costs_only_a_retry(cluster, inputs, local_merged, tmp_path: Path) -> None:
    """The actor that delivered the first part is SIGKILLed with its next parts in flight: Ray restarts it and
    retries them; every part is still done exactly once, none failed, the polygons are the local run's."""
    seen: list[dict] = []

    def kill_first_worker(outcome: dict) -> None:
        seen.append(outcome)
        if len(seen) == 1:
            os.kill(int(outcome["worker"].rsplit(":", 1)[1]), signal.SIGKILL)

    summary = run_batch(inputs, SETTINGS, str(tmp_path / "out"), ray="local", actors=2, show_progress=False,
                        on_outcome=kill_first_worker)
    assert RETRIES >= 1 and summary["done"] == 7 and summary["failed"] == 0
    assert sorted(o["part_id"] for o in seen) == sorted(e["part_id"] for e in _entries(tmp_path / "out"))
    assert len({o["worker"] for o in seen}) == 3  # the two actors and the killed one's restart
    assert_same_polygons(summary["merged"]["gpkg"], local_merged)


def test_an_interrupted_ray_run_started_again_does_every_part_once(cluster, inputs, local_merged,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"

    def interrupt_after_three(_outcome: dict) -> None:
        if sum(e["status"] == "done" for e in _entries(out)) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(inputs, SETTINGS, str(out), ray="local", actors=2, show_progress=False,
                  on_outcome=interrupt_after_three)
    first = {e["part_id"] for e in _entries(out) if e["status"] == "done"}
    assert len(first) == 3
    summary = run_batch(inputs, SETTINGS, str(out), ray="local", actors=2, show_progress=False)
    assert (summary["done"], summary["skipped_as_done"], summary["ran_now"]) == (7, 3, 4)
    assert {e["part_id"] for e in _entries(out) if e["run"] == 1} == first
    assert all(e["run"] == 2 for e in _entries(out) if e["part_id"] not in first)
    assert_same_polygons(summary["merged"]["gpkg"], local_merged)
