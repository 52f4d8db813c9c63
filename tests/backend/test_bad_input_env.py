"""Hostile environments: unusable ``RSREFSEG2_THREADS`` / ``RSREFSEG2_LOG_LEVEL`` values for a real worker process
and the command line, and a terminal that cannot encode the summary. Each setting ends in an ``environment`` error
naming the variable and its allowed values, never a traceback at start-up or a thread count that overflows torch
when the model loads; a summary the terminal cannot show is printed with replacements, never a failed run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
from rasters import gradient_rgb, write_geotiff

from backend.errors import EXIT_CODES
from backend.protocol import PROTOCOL_VERSION, Load, Ping, decode, encode

ROOT = Path(__file__).resolve().parents[2]
BAD_THREADS = ["9" * 20, str(2**63), "-3", "abc", "1.5", "1e3", "1025"]


def _serve(env: dict[str, str], *requests) -> tuple[list, str, int]:
    """Run ``python -m backend.worker`` with ``env`` on ``requests``; its (replies, stderr, exit status)."""
    lines = "".join(encode(r) + "\n" for r in requests)
    done = subprocess.run([sys.executable, "-m", "backend.worker"], cwd=ROOT, input=lines, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)
    return [decode(line) for line in done.stdout.splitlines()], done.stderr, done.returncode


@pytest.mark.parametrize("value", BAD_THREADS)
def test_a_worker_with_unusable_threads_answers_and_refuses_loads_by_the_variable_name(value) -> None:
    replies, stderr, status = _serve({"RSREFSEG2_THREADS": value, "RSREFSEG2_LOG_LEVEL": "INFO"},
                                     Ping(id="p"), Load(id="l", config="tiny", device="cpu"))
    assert status == 0 and "Traceback" not in stderr, stderr
    pong, error = replies
    assert pong.TYPE == "pong" and pong.protocol == PROTOCOL_VERSION
    assert (error.TYPE, error.id, error.code) == ("error", "l", "environment"), error
    assert error.message.startswith("RSREFSEG2_THREADS is ") and "whole number from 0 to 1024" in error.message
    assert "set RSREFSEG2_THREADS to" in error.hint and "0 for an automatic choice" in error.hint
    assert "torch threads" not in stderr  # refused before torch was given a count


def test_a_bogus_log_level_is_an_environment_error_not_a_startup_traceback() -> None:
    replies, stderr, status = _serve({"RSREFSEG2_LOG_LEVEL": "BOGUS", "RSREFSEG2_THREADS": "abc"},
                                     Ping(id="p"), Load(id="l", config="tiny", device="cpu"))
    assert status == 0 and "Traceback" not in stderr, stderr
    pong, error = replies
    assert pong.TYPE == "pong" and (error.code, error.id) == ("environment", "l")
    assert error.message.startswith("RSREFSEG2_LOG_LEVEL is 'BOGUS', not a log level; RSREFSEG2_THREADS is 'abc'")
    assert "one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in error.hint and "RSREFSEG2_THREADS" in error.hint


def test_a_log_level_in_any_case_is_used(tmp_path: Path) -> None:
    replies, stderr, _ = _serve({"RSREFSEG2_LOG_LEVEL": "warning"}, Ping(id="p"))
    assert replies[0].TYPE == "pong"
    assert "worker ready" not in stderr  # an INFO line, hidden at WARNING


@pytest.mark.parametrize("value", ["abc", "9" * 25])
def test_the_command_line_reports_unusable_threads_as_an_environment_error(tmp_path: Path, value) -> None:
    done = subprocess.run([sys.executable, "-m", "backend", "batch", str(tmp_path / "missing.tif"), "--phrase",
                           "the roof", "-o", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "RSREFSEG2_THREADS": value}, timeout=120)
    assert done.returncode == EXIT_CODES["environment"], done.stderr
    error, hint = done.stderr.splitlines()
    assert error.startswith("error: RSREFSEG2_THREADS is ") and hint.startswith("hint: set RSREFSEG2_THREADS to")
    assert not (tmp_path / "out").exists()


def test_backend_info_reports_unusable_threads_among_its_diagnostics() -> None:
    value = "9" * 25
    info = subprocess.run([sys.executable, "-m", "backend", "info", "--json"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "RSREFSEG2_THREADS": value}, timeout=120)
    assert info.returncode == 0, info.stderr  # diagnostics report the problem instead of failing on it
    assert json.loads(info.stdout)["worker_threads"]["error"].startswith("BackendError: RSREFSEG2_THREADS is ")


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_summary_the_terminal_cannot_encode_is_printed_with_replacements_and_the_run_succeeds(
        tmp_path: Path, encoding: str) -> None:
    scene = write_geotiff(tmp_path / "scène.tif", gradient_rgb(64, 64))
    output = tmp_path / "toits_é→.gpkg"
    phrase = "le toit rouge → é"
    done = subprocess.run([sys.executable, "-m", "backend", "segment", str(scene), phrase, "-o", str(output),
                           "--config", "tiny", "--device", "cpu"], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": encoding}, timeout=300)
    assert done.returncode == 0, done.stderr.decode(encoding, "replace")
    summary = done.stdout.decode(encoding)  # every byte is in the terminal's encoding
    assert "?" in summary and f"wrote {str(output).encode(encoding, 'replace').decode(encoding)}" in summary
    _meta, _fids, _geometry, fields = pyogrio.raw.read(output)
    assert list(fields[0]) == [phrase] * len(fields[0]) and len(fields[0]) >= 1  # the file keeps the exact text


def test_a_canvas_larger_than_the_temp_folders_free_space_is_disk_full_before_anything_is_allocated(
        tmp_path: Path) -> None:
    from backend.errors import BackendError
    from backend.raster.tiling import ProbabilityCanvas

    stats = os.statvfs(tmp_path)
    free_before = stats.f_bavail * stats.f_frsize
    width = 65536
    height = (free_before + 2**30) // (4 * width) + 1  # 1 GiB more than is free
    with pytest.raises(BackendError) as refused:
        ProbabilityCanvas(shape=(height, width), directory=str(tmp_path))
    assert refused.value.code == "disk_full" and str(tmp_path) in refused.value.message
    assert "GiB free" in refused.value.message and "TMPDIR" in refused.value.hint
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # the reserved file is gone with the refusal


# A find-all view of 4608² pixels (the 64² raster read at 0.5/72 m) needs an 81 MiB canvas: on disk, not in memory.
FIND_ALL_ON_DISK = ["--find-all", "--resolution", str(32 / 4608), "--config", "tiny", "--device", "cpu"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_size_limit_below_the_canvas_is_disk_full_not_a_signal(tmp_path: Path) -> None:
    import resource

    scene = write_geotiff(tmp_path / "scene.tif", gradient_rgb(64, 64))
    limit = 8 * 2**20  # room for the outputs, not for the canvas

    def limited() -> None:  # in the child only; its SIGXFSZ disposition is what the CLI itself sets
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "backend", "segment", str(scene), "all tanks", "-o",
                           str(tmp_path / "out.gpkg"), *FIND_ALL_ON_DISK], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)}, preexec_fn=limited, timeout=300)
    assert done.returncode == EXIT_CODES["disk_full"], (done.returncode, done.stderr[-2000:])  # not -SIGXFSZ/-SIGBUS
    error, hint = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert error.startswith("error: a probability map of this run needs 0.08 GiB in the temp folder ")
    assert "file size limit" in error and "ulimit -f unlimited" in hint and "TMPDIR" in hint
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("out.*"))
    assert not [p for p in tmp_path.rglob("*.f32")]
