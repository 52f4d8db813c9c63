"""BackendClient against the real worker process: ping, restart after a kill, clear crash and start errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis_helpers import PYTHON

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.client import BackendClient, WorkerError


def test_ping_restart_after_kill_and_clean_shutdown() -> None:
    client = BackendClient(python=PYTHON, backend_root=paths.backend_root())
    try:
        assert client.ping().protocol == client.protocol.PROTOCOL_VERSION
        first = client.pid
        client.kill()
        assert not client.running
        assert client.ping().protocol == 1  # restarted on demand
        assert client.pid != first
        process = client._process
    finally:
        client.shutdown()
    assert process.returncode == 0 and not client.running


def test_missing_interpreter_says_how_to_fix_it(tmp_path: Path) -> None:
    client = BackendClient(python=tmp_path / "no-python", backend_root=paths.backend_root())
    with pytest.raises(WorkerError) as info:
        client.ping()
    assert info.value.code == "worker_start" and "Set up backend" in info.value.hint
    # Offline, the way out is an existing Python with torch: the hint names the setting and the variable.
    assert "Settings… → Worker Python" in info.value.hint and "RSREFSEG2_PYTHON" in info.value.hint


def test_a_worker_that_dies_reports_its_last_stderr_lines(tmp_path: Path) -> None:
    # The base interpreter without the project, on a folder without backend/: the worker dies at import.
    client = BackendClient(python=Path(sys._base_executable), backend_root=tmp_path)
    with pytest.raises(WorkerError) as info:
        client.ping()
    assert info.value.code == "environment"  # it never answered: not a crash to retry, a setting to change
    assert "exited with status 1 before answering" in info.value.message
    assert "No module named 'backend'" in info.value.message
    assert "Worker Python" in info.value.hint  # a Python without the backend's packages: choose another
    assert not client.running


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX program that is not Python")
def test_a_worker_python_that_is_no_python_is_told_so(tmp_path: Path) -> None:
    """A program picked by mistake as the Worker Python (here the system's ``true``) exits at once, saying
    nothing: it was "stopped unexpectedly … the next query restarts it", as if a retry could help."""
    import shutil

    client = BackendClient(python=Path(shutil.which("true")), backend_root=paths.backend_root())
    with pytest.raises(WorkerError) as info:
        client.ping()
    assert info.value.code == "environment"
    assert info.value.message.startswith(f"The backend cannot run with {shutil.which('true')} (it exited with "
                                         "status 0 before answering)")
    assert "Settings… → Worker Python" in info.value.hint and "restarts" not in str(info.value)


def test_a_worker_that_dies_during_its_first_load_is_a_crash() -> None:
    import threading

    client = BackendClient(python=PYTHON, backend_root=paths.backend_root())
    try:
        # Killed during its first request, a load (importing torch alone takes longer than the delay), as the
        # OOM killer or a CUDA fault would: a crash, although the worker never answered that request.
        threading.Timer(1.0, lambda: client._process.kill()).start()
        with pytest.raises(WorkerError) as info:
            client.load(checkpoint=None, config="tiny", device="cpu")
    finally:
        client.shutdown()
    assert info.value.code == "worker_crashed" and "The next query restarts it" in info.value.hint


def test_the_thread_setting_reaches_the_worker() -> None:
    client = BackendClient(python=PYTHON, backend_root=paths.backend_root(), threads=3)
    try:
        client.load(checkpoint=None, config="tiny", device="cpu")
        log = client.stderr_tail()
    finally:
        client.shutdown()
    assert "torch threads: 3 (RSREFSEG2_THREADS)" in log, log


def test_a_failed_load_does_not_break_the_next_query(sample_tif: Path, tmp_path: Path) -> None:
    """Trained, then zero-shot without base weights (fails), then Trained again: the query answers."""
    client = BackendClient(python=PYTHON, backend_root=paths.backend_root())
    try:
        client.load(checkpoint=None, config="tiny", device="cpu")
        with pytest.raises(WorkerError) as info:
            client.load(checkpoint=None, config="tiny", device="cpu", mode="zero-shot")
        assert info.value.code == "weights"
        client.load(checkpoint=None, config="tiny", device="cpu")
        result = client.segment(raster=str(sample_tif), phrases=("the white tank",), output_dir=str(tmp_path),
                                tile_size=256, overlap=32)
        log = client.stderr_tail()
    finally:
        client.shutdown()
    assert Path(result.outputs.geojson).is_file()
    # The client forgot the model after the failure and asked the worker again, rather than trust its record.
    assert log.count("loading checkpoint=None config=tiny device=cpu mode=trained") == 2, log
