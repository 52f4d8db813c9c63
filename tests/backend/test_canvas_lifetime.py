"""Disk-backed probability maps never outlive their process: killed runs leave nothing, or are swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend.files.stale import owned_prefix, owner_pid, pid_alive, sweep
from backend.raster.tiling import CANVAS_FOLDER_PREFIX, ProbabilityCanvas

OURS = owned_prefix(CANVAS_FOLDER_PREFIX)  # rsrefseg-canvas-<this machine>-

ROOT = Path(__file__).resolve().parents[2]

# A child that holds a 2 MiB disk-backed canvas, says so, then waits to be killed.
HOLD_CANVAS = """
import sys, time
from backend.raster.tiling import ProbabilityCanvas
canvas = ProbabilityCanvas(shape=(1024, 512), in_memory_bytes=0, directory=sys.argv[1])
canvas.array[:] = 0.25
print("ready", flush=True)
time.sleep(120)
"""


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(child.stdout)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_run_leaves_no_probability_map_and_its_folder_is_swept(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLD_CANVAS, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)  # no cleanup code runs: the out-of-memory killer does the same
    finally:
        child.kill()
        child.wait(timeout=30)
    assert not files_under(tmp_path), "a killed run left its probability map on disk"
    with ProbabilityCanvas(shape=(64, 64), in_memory_bytes=0, directory=str(tmp_path)):  # the next run
        names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{OURS}{os.getpid()}"], "the dead run's folder was not swept"


def test_sweep_removes_what_dead_processes_left_and_keeps_live_ones(tmp_path):
    # What a killed run leaves where open files cannot be unlinked (Windows): its folder with the map in it.
    pid = dead_pid()
    dead = tmp_path / f"{OURS}{pid}"
    dead.mkdir()
    (dead / "map.f32").write_bytes(b"\0" * 4096)
    live = tmp_path / f"{OURS}{os.getppid()}"
    live.mkdir()
    other_machine = tmp_path / f"{CANVAS_FOLDER_PREFIX}othermachine-{pid}"  # shared disk: its PID means nothing
    other_machine.mkdir()
    unrelated = tmp_path / f"{OURS}notes.txt"
    unrelated.write_text("keep")
    assert sweep(tmp_path, OURS) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_machine.name, unrelated.name])


def test_owner_pids_and_liveness():
    assert owner_pid("rsrefseg-canvas-1234", CANVAS_FOLDER_PREFIX) == 1234
    assert owner_pid(".rsrefseg-tmp-77-ab12-result.gpkg", ".rsrefseg-tmp-") == 77
    assert owner_pid("rsrefseg-canvas-12ab", CANVAS_FOLDER_PREFIX) is None
    assert owner_pid("other-1234", CANVAS_FOLDER_PREFIX) is None
    assert pid_alive(os.getpid()) and pid_alive(os.getppid())
    assert not pid_alive(dead_pid()) and not pid_alive(0)
