"""A Python without our packages is told so, with what to do: real bare venvs run the real worker and CLI.

Issue 25: such a Python was answered "No module named 'numpy' … this is a bug" (CLI) or named only the first
missing package; now every entry point answers with code ``environment``, the interpreter, every package it
lacks and the setting that chooses another (Settings → Worker Python, Set up backend…).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from backend.environment.packages import REQUIRED_MODULES
from backend.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def _venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv with nothing installed (not even pip)."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    return _venv_python(folder)


@pytest.fixture(scope="module")
def numpy_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv that can import numpy (this interpreter's own, through a ``.pth`` file) and nothing else."""
    folder = tmp_path_factory.mktemp("numpy_only")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, timeout=120)
    python = _venv_python(folder / "venv")
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()
    (folder / "only").mkdir()
    (folder / "only" / "numpy").symlink_to(Path(numpy.__file__).parent, target_is_directory=True)
    (Path(site) / "numpy_only.pth").write_text(str(folder / "only") + "\n", encoding="utf-8")
    return python


def _run(python: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([str(python), *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def _worker_load(python: Path) -> dict[str, str]:
    request = {"type": "load", "id": "l1", "v": 1, "checkpoint": None, "config": "tiny", "device": "cpu"}
    proc = _run(python, "-m", "backend.worker", stdin=json.dumps(request) + "\n")
    replies = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(replies) == 1, (proc.stdout, proc.stderr)
    return replies[0]


def test_the_worker_names_every_missing_package_and_the_setting(bare_python: Path) -> None:
    reply = _worker_load(bare_python)
    assert reply["type"] == "error" and reply["code"] == "environment"
    assert reply["message"] == f"this Python ({bare_python}) lacks {', '.join(REQUIRED_MODULES)}"
    assert "Settings… → Worker Python" in reply["hint"] and "Set up backend…" in reply["hint"]
    assert "bug" not in reply["message"] + reply["hint"]


def test_a_python_with_numpy_but_not_the_rest_is_told_what_it_lacks(numpy_only_python: Path) -> None:
    assert _run(numpy_only_python, "-c", "import numpy").returncode == 0
    reply = _worker_load(numpy_only_python)
    assert reply["code"] == "environment" and "rasterio" in reply["message"] and "torch" in reply["message"]
    assert "numpy" not in reply["message"].split("lacks", 1)[1]


@pytest.mark.parametrize("command", [("segment", "missing.tif", "a building", "-o", "out.gpkg"),
                                     ("weights", "list")])
def test_the_cli_reports_a_lacking_python_not_a_bug(bare_python: Path, tmp_path: Path, command) -> None:
    """``segment`` failed on numpy and ``weights list`` on tqdm as "this is a bug" (exit 1)."""
    args = [str(tmp_path / arg) if arg.endswith((".tif", ".gpkg")) else arg for arg in command]
    proc = _run(bare_python, "-m", "backend", *args)
    assert proc.returncode == EXIT_CODES["environment"], proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == f"error: this Python ({bare_python}) lacks {', '.join(REQUIRED_MODULES)}"
    assert lines[1].startswith("hint: choose another in Plugins → RSRefSeg 2 → Settings… → Worker Python")
    assert "bug" not in proc.stderr
    assert not (tmp_path / "out.gpkg").exists()


def test_info_reports_a_lacking_python_instead_of_crashing(bare_python: Path) -> None:
    proc = _run(bare_python, "-m", "backend", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["missing_packages"] == list(REQUIRED_MODULES)
    assert info["summary"].startswith(f"Not ready: this Python ({bare_python}) lacks torch, ")
    assert "Settings… → Worker Python" in info["summary"] and "error" in info["weights"]


def test_a_package_that_is_there_but_does_not_import_is_named(tmp_path: Path) -> None:
    """A broken binary install (rasterio present, its GDAL library gone) in this very Python: an 'environment'
    error quoting the import failure, before any output is written, not "this is a bug"."""
    broken = tmp_path / "shadow" / "rasterio"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        'raise ImportError("libgdal.so.36: cannot open shared object file: No such file or directory")\n',
        encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tmp_path / "shadow"), str(ROOT)))}
    sample = ROOT / "resources" / "sample" / "sample.tif"
    proc = subprocess.run([sys.executable, "-m", "backend", "segment", str(sample), "a white tank", "-o",
                           str(tmp_path / "out.gpkg")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == EXIT_CODES["environment"], proc.stderr
    assert f"error: this Python ({sys.executable}) cannot import a package the backend needs: libgdal.so.36" in \
        proc.stderr and "bug" not in proc.stderr
    assert not (tmp_path / "out.gpkg").exists()
