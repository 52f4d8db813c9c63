"""Failures while writing, and cheap refusals before model work: one clear error, nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasters import write_geotiff

from backend.engine import Engine, SegmentJob
from backend.errors import BackendError
from backend.model.checkpoint.io import CheckpointMeta
from backend.output.writing import SCRATCH_PREFIX

ROOT = Path(__file__).resolve().parents[2]

# Writes the outputs in a process whose files may not grow beyond 8 KiB: the write fails half-way, as on a full
# disk (SIGXFSZ ignored, so the write gets EFBIG instead of killing the process).
WRITE_WITH_FILE_LIMIT = """
import json, resource, signal, sys
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from backend.errors import BackendError
from backend.output.writing import PhraseDetections, output_paths, write_outputs
from backend.output.vectorize import vectorize
probs = np.zeros((20, 20), np.float32)
probs[2:8, 2:8] = 0.9  # one polygon: an empty GeoPackage alone is far more than 8 KiB
utm = CRS.from_epsg(32633)
layers = [PhraseDetections("dots", tuple(vectorize(probs, Affine(0.5, 0, 5e5, 0, -0.5, 4e6), utm)))]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
try:
    write_outputs(layers, utm, output_paths(sys.argv[1], "result"), model="m", checkpoint="c")
    print(json.dumps({"code": None}))
except BackendError as err:
    print(json.dumps(err.to_dict()))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_that_fails_half_way_is_one_error_and_leaves_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-c", WRITE_WITH_FILE_LIMIT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # no traceback: a BackendError
    error = json.loads(done.stdout.strip().splitlines()[-1])
    assert error["code"] == "bad_request" and "result." in error["message"] and error["hint"]
    assert not list(tmp_path.iterdir())  # neither output, nor a scratch file


@pytest.fixture
def tiny_scene(tmp_path):
    data = (np.random.default_rng(0).random((3, 64, 64)) * 200).astype(np.uint8)
    return write_geotiff(tmp_path / "scene.tif", data, transform=Affine(0.5, 0, 5e5, 0, -0.5, 4e6))


class NoModel:
    """Stands in for the predictor in runs that must be refused before any model work (it fails if used)."""

    input_size = 256
    mode = "trained"
    meta = CheckpointMeta()

    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name}) before the run was refused")


def test_probability_maps_that_do_not_fit_the_temp_disk_are_refused_up_front(tiny_scene, tmp_path):
    # A 16384² find-all view (the 64² raster resampled) needs 1 GiB per phrase on disk: ask for more than is free.
    per_map = 16384 * 16384 * 4
    count = shutil.disk_usage(tempfile.gettempdir()).free // per_map + 2
    job = SegmentJob(raster=str(tiny_scene), phrases=tuple(f"tank {i}" for i in range(count)),
                     output_dir=str(tmp_path), mode="find-all", resolution=32 / 16384)
    with pytest.raises(BackendError) as info:
        Engine(NoModel()).run(job)
    assert info.value.code == "disk_full" and "GiB" in info.value.message and "TMPDIR" in info.value.hint
    assert not list(tmp_path.glob("segmentation.*"))


@pytest.mark.parametrize("phrase", ["the caf\udce9 roof", "x\ud800"])
def test_phrases_that_are_not_utf8_are_refused_before_any_model_work(tiny_scene, tmp_path, phrase):
    # e.g. a worker request whose JSON carries "\\ud800": valid JSON, but no UTF-8 text.
    with pytest.raises(BackendError) as info:
        Engine(NoModel()).run(SegmentJob(raster=str(tiny_scene), phrases=("a tank", phrase),
                                         output_dir=str(tmp_path)))
    assert info.value.code == "bad_request" and "phrase 2" in info.value.message
    assert "byte position" in info.value.message


def test_unwritable_output_is_refused_before_reading_the_raster(tmp_path):
    (tmp_path / "segmentation.gpkg").mkdir()
    with pytest.raises(BackendError) as info:
        Engine(NoModel()).run(SegmentJob(raster=str(tmp_path / "missing.tif"), phrases=("tank",),
                                         output_dir=str(tmp_path)))
    assert "segmentation.gpkg" in info.value.message and "folder" in info.value.message
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(SCRATCH_PREFIX)]


def test_a_raster_path_that_is_not_utf8_is_refused_by_name(tmp_path):
    with pytest.raises(BackendError, match="the raster path is not valid UTF-8"):
        Engine(NoModel()).run(SegmentJob(raster=str(tmp_path / "sc\udce8ne.tif"), phrases=("tank",),
                                         output_dir=str(tmp_path)))
