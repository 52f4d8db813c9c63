"""``python -m backend batch``'s work: plan the parts, run those not done (here or on Ray), merge, summarise.

The output folder holds ``manifest.json`` (``backend.batch.manifest``), ``parts/<part>.gpkg`` (and ``.geojson``)
per part, ``merged.gpkg`` (and ``.geojson``) over every done part, and ``summary.txt``. It belongs to the batch:
a rerun of the same command resumes there, and the merged files are rewritten after each run. A folder that has
merged files but no manifest (someone else's) is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from backend.batch.local import run_local
from backend.batch.manifest import MANIFEST_NAME, Manifest
from backend.batch.merge import PartPolygons, merge_parts
from backend.batch.plan import Part, build_plan
from backend.batch.work import BatchSettings, part_outputs
from backend.errors import BackendError, counted
from backend.output.preflight import check_output_targets
from backend.output.writing import output_paths

MERGED_NAME = "merged"
SUMMARY_NAME = "summary.txt"
PARTS_FOLDER = "parts"


def run_batch(inputs: list[str], settings: BatchSettings, output_dir: str, *, ray: str | None = None,
              actors: int | None = None, threads: int | None = None, show_progress: bool = True,
              on_outcome: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) a batch and merge its parts.

    Args:
        inputs: raster files, folders, VRT mosaics.
        settings: what every part is segmented with.
        output_dir: the batch's folder (created if missing).
        ray: None to run here; a Ray address, or "local" for a Ray started on this machine.
        actors: Ray's actor pool size (None: one per GPU, else from the CPUs; ``ray_data.plan_actors``).
        threads: torch threads of the local run (None: automatic).
        show_progress: progress bars on stderr.
        on_outcome: called with each part's outcome after the manifest has recorded it.

    Returns:
        The summary (also stored in the manifest): part counts, polygons per phrase, failures, outputs, time.

    Raises:
        BackendError: for unusable inputs, a folder holding another batch or someone else's files, or a model
            that cannot be loaded.
    """
    started = time.perf_counter()
    parts = build_plan(inputs, settings.part_size)
    merged = output_paths(output_dir, MERGED_NAME)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as err:
        raise BackendError("bad_request", f"cannot create the output folder {output_dir!r}: {err.strerror}",
                           "choose a folder you can write to") from err
    if not (Path(output_dir) / MANIFEST_NAME).exists():
        check_output_targets([*merged.values(), str(Path(output_dir) / SUMMARY_NAME)], overwrite=False)
    manifest = Manifest.open(output_dir, parts, settings.fingerprint())
    todo = manifest.todo()
    skipped = len(parts) - len(todo)
    run = manifest.start_run("local" if ray is None else f"ray {ray}")
    parts_dir = str(Path(output_dir) / PARTS_FOLDER)

    def record(outcome: dict) -> None:
        manifest.record(outcome, run)
        if on_outcome is not None:
            on_outcome(outcome)

    if ray is None:
        run_local(todo, settings, parts_dir, record, threads=threads, show_progress=show_progress)
    else:
        from backend.batch.ray_data import run_ray

        run_ray(ray, todo, settings, parts_dir, record, actors=actors, show_progress=show_progress)
    entries = manifest.data["parts"]
    done = [e for e in entries if e["status"] == "done"]
    sources = [PartPolygons(source=e["source"], path=part_outputs(parts_dir, Part.from_dict(e))["gpkg"],
                            pixel_area=float(e["resolution"]) ** 2) for e in done]
    models = sorted({e["model"] for e in done if e["model"]})
    checkpoint = Path(settings.checkpoint).name if settings.checkpoint else f"none ({settings.config})"
    _, counts = merge_parts(sources, settings.phrases, merged, model="; ".join(models), checkpoint=checkpoint)
    summary = {"parts": len(parts), "done": len(done), "failed": sum(e["status"] == "failed" for e in entries),
               "skipped_as_done": skipped, "ran_now": len(todo), "polygons": counts,
               "failures": {e["part_id"]: e["error"] for e in entries if e["status"] == "failed"},
               "merged": merged if done else {}, "seconds": round(time.perf_counter() - started, 2),
               "runner": manifest.data["runs"][-1]["runner"]}
    manifest.finish_run(summary)
    _write_summary(Path(output_dir) / SUMMARY_NAME, summary)
    return summary


def summary_lines(summary: dict) -> list[str]:
    """The summary as the lines ``python -m backend batch`` prints (and ``summary.txt`` holds)."""
    lines = [f"parts: {summary['done']} of {summary['parts']} done, {summary['failed']} failed "
             f"({summary['skipped_as_done']} already done before this run, {summary['ran_now']} run now, "
             f"{summary['runner']}, {summary['seconds']:.1f} s)"]
    lines += [f"{phrase!r}: {counted(count, 'polygon')} merged" for phrase, count in summary["polygons"].items()]
    lines += [f"failed: {part}: {error}" for part, error in summary["failures"].items()]
    if summary["merged"]:
        lines.append(f"wrote {summary['merged']['gpkg']} and {summary['merged']['geojson']}")
    return lines


def _write_summary(path: Path, summary: dict) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text("\n".join(summary_lines(summary)) + "\n", encoding="utf-8")
    os.replace(scratch, path)
