"""A writer SIGKILLed at any step of putting the GeoPackage + GeoJSON pair in place leaves nothing half-done:
the next write to the folder rolls the change back (old pair restored, lone new files removed) or, once it was
committed, only clears its leftovers; no step ever leaves an empty output file.

Each case runs a real writer process that kills itself right after the named step (``backend.output.swap``'s
test hook, ``RSREFSEG2_TEST_KILL_AT``), on this file system and on one without hard links (FAT, some network
shares: they cannot be mounted here, so ``os.link`` fails in the writer as it fails there, with EPERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_output_safety import UTM, layers, models_in, scratch_files

from backend.output.swap import KILL_AT_ENV
from backend.output.writing import output_paths, write_outputs

ROOT = Path(__file__).resolve().parents[2]

# One writer process: writes the pair "result" into argv[1] with model argv[2]; argv[3] "1" = --overwrite,
# argv[4] "1" = a file system without hard links.
WRITER = """
import errno, os, sys
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from backend.output.vectorize import vectorize
from backend.output.writing import PhraseDetections, output_paths, write_outputs

folder, model, overwrite, no_links = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
if no_links:
    def link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")
    os.link = link
probs = np.zeros((20, 20), np.float32)
probs[2:8, 2:8] = 0.9
crs = CRS.from_epsg(32633)
found = PhraseDetections("the tank", tuple(vectorize(probs, Affine(0.5, 0, 500000.0, 0, -0.5, 4e6), crs)))
write_outputs([found], crs, output_paths(folder, "result"), model=model, checkpoint="c", overwrite=overwrite)
"""

NEW_PAIR_STEPS = ["journal", "place 0", "place 1", "commit"]
OVERWRITE_STEPS = ["journal", "backup 0", "backup 1", "place 0", "place 1", "commit"]
CASES = [(False, step) for step in NEW_PAIR_STEPS] + [(True, step) for step in OVERWRITE_STEPS]


def run_writer(folder: Path, model: str, *, overwrite: bool, no_links: bool, kill_at: str | None = None
               ) -> subprocess.CompletedProcess:
    env = {**os.environ, KILL_AT_ENV: kill_at} if kill_at else dict(os.environ)
    return subprocess.run([sys.executable, "-c", WRITER, str(folder), model, str(int(overwrite)), str(int(no_links))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("no_links", [False, True], ids=["hard-links", "no-hard-links"])
@pytest.mark.parametrize(("overwrite", "step"), CASES, ids=[f"{'overwrite' if o else 'new'}-{s}" for o, s in CASES])
def test_a_writer_killed_at_each_step_is_rolled_back_by_the_next_write(tmp_path, overwrite, step, no_links):
    paths = output_paths(str(tmp_path), "result")
    if overwrite:
        write_outputs(layers(), UTM, paths, model="old", checkpoint="c")
    killed = run_writer(tmp_path, "new", overwrite=overwrite, no_links=no_links, kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert all(p.stat().st_size > 0 for p in tmp_path.iterdir() if p.name.startswith("result"))  # never empty

    write_outputs(layers(), UTM, output_paths(str(tmp_path), "next"), model="next", checkpoint="c")

    present = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("result"))
    if step == "commit":  # the change was complete: the new pair stays
        assert present == ["result.geojson", "result.gpkg"] and models_in(paths) == {"new"}
    elif overwrite:  # the old pair is back, both files
        assert present == ["result.geojson", "result.gpkg"] and models_in(paths) == {"old"}
    else:  # the new pair never appeared
        assert present == []
    assert not scratch_files(tmp_path)  # no backup, scratch file or journal left behind


def test_a_file_saved_under_the_name_meanwhile_is_never_removed_by_the_roll_back(tmp_path):
    # The writer dies after placing its GeoJSON; the user then saves their own file under that name.
    killed = run_writer(tmp_path, "new", overwrite=False, no_links=False, kill_at="place 0")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    mine = tmp_path / "result.geojson"
    mine.unlink()
    mine.write_text("the user's own file")
    write_outputs(layers(), UTM, output_paths(str(tmp_path), "next"), model="next", checkpoint="c")
    assert mine.read_text() == "the user's own file"
    assert not (tmp_path / "result.gpkg").exists() and not scratch_files(tmp_path)
