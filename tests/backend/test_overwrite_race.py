"""Two ``python -m backend segment --overwrite`` runs writing the same outputs at the same instant take turns:
both succeed, and every pair left on disk is one run's GeoPackage with the same run's GeoJSON.

Two real CLI processes each run 20 trials. The swap of a local disk takes microseconds, which two processes
rarely hit at once; a network share takes milliseconds per rename. The writers therefore run on a slow file
system, simulated in the test's processes (a slow share cannot be mounted here): each ``os.replace`` and
``os.link`` waits 0-60 ms first, and the first one of each trial also waits (at most 0.5 s) for the other run
to reach its own, so both swap at the same time. Without the output lock this leaves mismatched pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
from rasters import write_geotiff
from test_output_safety import UTM, layers, scratch_files

from backend.output.writing import output_paths, write_outputs

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 20

# One CLI process: argv = scene, output folder, barrier folder, its name, trials. Prints its exit codes.
CLI_RUNS = """
import contextlib, io, json, os, random, sys, time
from pathlib import Path
from backend.cli import main

scene, folder, barrier, me, trials = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])

state = {"trial": -1, "synced": -1}

def slow(real):
    def call(*args, **kwargs):
        if state["synced"] < state["trial"]:  # the trial's first rename or link: meet the other run here
            state["synced"] = state["trial"]
            (barrier / f"swap-{state['trial']}-{me}").touch()
            deadline = time.monotonic() + 0.5  # not for ever: the other run may be waiting for our lock
            while len(list(barrier.glob(f"swap-{state['trial']}-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
        time.sleep(random.uniform(0.0, 0.06))
        return real(*args, **kwargs)
    return call

os.replace, os.link = slow(os.replace), slow(os.link)
codes = []
for trial in range(trials):
    state["trial"] = trial
    with contextlib.redirect_stdout(io.StringIO()):
        codes.append(main(["segment", scene, f"the tank of {me}", "-o", os.path.join(folder, f"trial{trial}.gpkg"),
                           "--overwrite", "--threshold", "0.01", "--config", "tiny", "--device", "cpu"]))
print(json.dumps(codes))
"""


def test_two_overwriting_cli_runs_at_once_leave_whole_pairs(tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", (np.random.default_rng(3).random((3, 64, 64)) * 200)
                          .astype(np.uint8))
    out, barrier = tmp_path / "out", tmp_path / "barrier"
    out.mkdir()
    barrier.mkdir()
    pairs = [output_paths(str(out), f"trial{trial}") for trial in range(TRIALS)]
    for paths in pairs:  # an old pair to replace, so both the backup and the replace steps race
        write_outputs(layers(), UTM, paths, model="old", checkpoint="c")
    runs = [subprocess.Popen([sys.executable, "-c", CLI_RUNS, str(scene), str(out), str(barrier), name,
                              str(TRIALS)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in ("a", "b")]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert json.loads(stdout.strip().splitlines()[-1]) == [0] * TRIALS, stderr  # both waited their turn

    mismatched = []
    for trial, paths in enumerate(pairs):
        queries = {fmt: set(pyogrio.raw.read(path)[3][0]) for fmt, path in paths.items()}
        assert queries["gpkg"] in ({"the tank of a"}, {"the tank of b"}), queries  # a run's answer, not the old
        if queries["gpkg"] != queries["geojson"]:
            mismatched.append(trial)
    assert not mismatched, f"trials {mismatched} hold a GeoPackage from one run and a GeoJSON from the other"
    assert not scratch_files(out)
