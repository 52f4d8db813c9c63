"""``python -m backend batch`` in one process: the plan, the outputs, resuming, failures, the merge across parts.

Real rasters (a GDAL VRT of 4 copies of the sample and 3 separate copies), the bundled demo model, real
GeoPackages written and read back. The Ray runner's tests are in ``test_batch_ray.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.crs import CRS

from backend.batch.manifest import MANIFEST_NAME
from backend.batch.merge import PartPolygons, merge_parts
from backend.batch.plan import build_plan, windows
from backend.batch.run import run_batch
from backend.batch.work import BatchSettings
from backend.errors import BackendError
from backend.output.vectorize import Detection
from backend.output.writing import PhraseDetections, output_paths, write_outputs
from tests.backend.batch_inputs import DEMO, PART_SIZE, PHRASES, RESOLUTION, make_inputs, read_polygons
from tests.backend.rasters import gradient_rgb, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = BatchSettings(phrases=PHRASES, mode="find-all", resolution=RESOLUTION, checkpoint=str(DEMO),
                         device="cpu", part_size=PART_SIZE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return make_inputs(tmp_path_factory.mktemp("batch-inputs"))


@pytest.fixture(scope="module")
def local_run(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("batch-local") / "out"
    return out, run_batch(inputs, SETTINGS, str(out), show_progress=False)


def test_windows_tile_the_raster_exactly_once() -> None:
    parts = windows(1000, 700, 300)
    covered = np.zeros((700, 1000), np.int32)
    for col, row, width, height in parts:
        covered[row:row + height, col:col + width] += 1
    assert len(parts) == 4 * 3 and (covered == 1).all()


def test_plan_cuts_the_mosaic_and_keeps_small_files_whole(inputs: list[str]) -> None:
    parts = build_plan(inputs, PART_SIZE)
    assert [p.pixels for p in parts[:4]] == [(0, 0, 512, 512), (512, 0, 512, 512), (0, 512, 512, 512),
                                             (512, 512, 512, 512)]
    assert {p.source for p in parts[:4]} == {inputs[0]}
    assert [(p.part_id, p.pixels) for p in parts[4:]] == [("file0", None), ("file1", None), ("file2", None)]
    folder_parts = build_plan([str(Path(inputs[1]).parent)], PART_SIZE)  # the folder: 4 copies, 3 files, the VRT
    assert len({p.part_id for p in folder_parts}) == len(folder_parts) == 4 + 3 + 4


def test_missing_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist") as caught:
        run_batch([str(tmp_path / "nothing.tif")], SETTINGS, str(tmp_path / "out"))
    assert caught.value.hint and not (tmp_path / "out").exists()


def test_local_run_writes_every_part_the_merge_the_manifest_and_the_summary(local_run) -> None:
    out, summary = local_run
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert [e["status"] for e in manifest["parts"]] == ["done"] * 7
    assert summary["done"] == 7 and summary["failed"] == 0 and summary["runner"] == "local"
    for entry in manifest["parts"]:
        assert entry["model"].startswith("rsrefseg2") and entry["seconds"] > 0 and entry["run"] == 1
        part = read_polygons(str(out / "parts" / f"{entry['part_id']}.gpkg"))
        assert sum(len(p) for p in part.values()) == entry["polygons"]
    merged = read_polygons(str(out / "merged.gpkg"))
    assert {q: len(p) for q, p in merged.items()} == summary["polygons"] and sum(summary["polygons"].values()) > 0
    # The three separate copies of the sample cover the same ground and are never joined: each contributes alike.
    files = [read_polygons(str(out / "parts" / f"file{i}.gpkg")) for i in range(3)]
    assert all({q: len(p) for q, p in f.items()} == {q: len(p) for q, p in files[0].items()} for f in files)
    assert "7 of 7 done" in (out / "summary.txt").read_text(encoding="utf-8")


def test_rerun_skips_the_parts_done(local_run, inputs: list[str]) -> None:
    out, first = local_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.gpkg")}
    again = run_batch(inputs, SETTINGS, str(out), show_progress=False)
    assert again["skipped_as_done"] == 7 and again["ran_now"] == 0 and again["polygons"] == first["polygons"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.gpkg")} == before


def test_a_batch_with_other_settings_is_refused(local_run, inputs: list[str]) -> None:
    out, _ = local_run
    with pytest.raises(BackendError, match="threshold") as caught:
        run_batch(inputs, BatchSettings(**{**SETTINGS.__dict__, "threshold": 0.7}), str(out))
    assert "another output folder" in caught.value.hint


def test_someone_elses_merged_file_is_never_overwritten(tmp_path: Path, inputs: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "merged.gpkg").write_bytes(b"the user's own data")
    with pytest.raises(BackendError) as caught:
        run_batch(inputs, SETTINGS, str(out))
    assert caught.value.code == "output_exists" and (out / "merged.gpkg").read_bytes() == b"the user's own data"


def test_a_failing_part_is_recorded_and_the_others_go_on(tmp_path: Path, inputs: list[str]) -> None:
    no_crs = write_geotiff(tmp_path / "no_crs.tif", gradient_rgb(128, 128), crs=None)
    summary = run_batch([inputs[1], str(no_crs)], SETTINGS, str(tmp_path / "out"), show_progress=False)
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert [e["status"] for e in manifest["parts"]] == ["done", "failed"]
    assert manifest["parts"][1]["error"].startswith("no_crs:") and summary["failures"] == {
        "no_crs": manifest["parts"][1]["error"]}
    assert summary["polygons"] == {q: len(p) for q, p in read_polygons(summary["merged"]["gpkg"]).items()}


def _batch_command(inputs: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "backend", "batch", *inputs, "--phrase", PHRASES[0], "--phrase", PHRASES[1],
            "--find-all", "--resolution", "native", "--part-size", "256", "--checkpoint", str(DEMO),
            "--device", "cpu", "--threads", "1", "--no-progress", "-o", str(out)]


def _statuses(out: Path) -> list[dict]:
    try:
        return json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["parts"]
    except (OSError, ValueError):
        return []


def test_a_killed_run_started_again_does_every_part_once(tmp_path: Path, inputs: list[str]) -> None:
    """SIGKILL (no clean-up at all) after two parts; the same command then does the rest, each part once."""
    out = tmp_path / "out"
    command = _batch_command(inputs[:2], out)  # parts of 256 px: 16 of the mosaic, 4 of the file
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while sum(e["status"] == "done" for e in _statuses(out)) < 2:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = {e["part_id"]: e for e in _statuses(out) if e["status"] == "done"}
    assert 2 <= len(first) < 20
    written = {part: (out / "parts" / f"{part}.gpkg").stat().st_mtime_ns for part in first}
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"20 of 20 done, 0 failed ({len(first)} already done before this run, {20 - len(first)} run now" \
        in rerun.stdout
    entries = _statuses(out)
    assert all(e["status"] == "done" for e in entries)
    assert {e["part_id"] for e in entries if e["run"] == 1} == set(first)  # not done again in the second run
    assert {part: (out / "parts" / f"{part}.gpkg").stat().st_mtime_ns for part in first} == written
    assert not [p.name for p in out.rglob(".*")]  # no scratch file left behind


def test_cli_help_documents_local_and_ray() -> None:
    result = subprocess.run([sys.executable, "-m", "backend", "batch", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--ray ADDRESS|local" in result.stdout and "Local (default)" in result.stdout
    assert "retried up to 3 times" in result.stdout


def test_objects_cut_by_part_borders_are_joined_and_other_sources_are_not(tmp_path: Path) -> None:
    """Two parts of one mosaic whose pieces share the border x = 100, and a third file over the same ground."""
    crs = CRS.from_epsg(32633)
    pieces = {"left": (shapely.box(80, 0, 100, 10), 0.8), "right": (shapely.box(100, 0, 130, 10), 0.6),
              "other": (shapely.box(80, 0, 100, 10), 0.9)}
    parts = []
    for name, (box, score) in pieces.items():
        paths = output_paths(str(tmp_path), name)
        detection = Detection(geometry=box, score=score, area_m2=box.area, area_px=box.area)
        write_outputs([PhraseDetections("tank", (detection,))], crs, paths, model="m", checkpoint="c")
        parts.append(PartPolygons(source="other.tif" if name == "other" else "mosaic.vrt", path=paths["gpkg"],
                                  pixel_area=1.0))
    merged = output_paths(str(tmp_path), "merged")
    _, counts = merge_parts(parts, ("tank",), merged, model="m", checkpoint="c")
    assert counts == {"tank": 2}
    polygons = sorted(read_polygons(merged["gpkg"])["tank"], key=lambda p: p.area)
    assert polygons[0].equals(shapely.box(80, 0, 100, 10)) and polygons[1].equals(shapely.box(80, 0, 130, 10))
    import pyogrio.raw

    _, _, _, fields = pyogrio.raw.read(merged["gpkg"], columns=["score", "area_m2"])
    joined = int(np.argmax(fields[1]))
    assert fields[1][joined] == pytest.approx(500.0)  # 200 + 300 m², score weighted by area
    assert fields[0][joined] == pytest.approx((0.8 * 200 + 0.6 * 300) / 500)
    assert os.path.isfile(merged["geojson"])
