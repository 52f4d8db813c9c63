"""``python -m backend segment`` refuses what it cannot do before loading the model, in a fraction of a second:
unwritable outputs, text that is not UTF-8; and it says which resolution it used and how many answers it kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from rasters import write_geotiff
from readonly import read_only

from backend.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", "tiny", "--device", "cpu"]

# Runs the CLI in a fresh interpreter and reports its exit status, whether torch or GDAL were imported and how
# long main() took.
TIMED_MAIN = """
import json, sys, time
start = time.perf_counter()
from backend.cli import main
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "rasterio": "rasterio" in sys.modules,
                  "seconds": time.perf_counter() - start}))
"""


@pytest.fixture
def scene(tmp_path):
    data = (np.random.default_rng(3).random((3, 120, 120)) * 200).astype(np.uint8)
    return write_geotiff(tmp_path / "scene.tif", data)


def timed_main(argv: list[str]) -> tuple[dict, str]:
    import json

    done = subprocess.run([sys.executable, "-c", TIMED_MAIN, json.dumps(argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def error_lines(stderr: str) -> tuple[str, str]:
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), stderr
    return lines[-2], lines[-1]


def test_a_read_only_output_folder_fails_at_once_without_loading_anything(scene, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    with read_only(folder):
        report, stderr = timed_main(["segment", str(scene), "the tank", "-o", str(folder / "r.gpkg"), *TINY])
    assert report["code"] == 2
    assert not report["torch"] and not report["rasterio"]  # refused before the model or even GDAL was loaded
    assert report["seconds"] < 1.0
    error, hint = error_lines(stderr)
    assert str(folder) in error and "permission denied" in error and "write to" in hint


def test_a_device_as_output_is_refused(scene, capsys):
    assert main(["segment", str(scene), "the tank", "-o", os.devnull, *TINY]) == 2
    error, _ = error_lines(capsys.readouterr().err)
    assert os.devnull in error and "device" in error


def test_argv_bytes_that_are_not_utf8_are_refused_at_once_with_their_position(scene, tmp_path):
    # What a Latin-1 terminal sends for "café": the shell passes the raw byte 0xE9.
    done = subprocess.run([sys.executable, "-m", "backend", "segment", str(scene), b"the caf\xe9 roof", "-o",
                           str(tmp_path / "r.gpkg"), *TINY], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 2
    error, hint = error_lines(done.stderr)
    assert "argument 3" in error and "byte 0xe9 at byte position 7" in error and "UTF-8" in hint
    assert not list(tmp_path.glob("r.*"))


def test_a_phrases_file_with_a_bad_byte_is_refused_with_its_position(scene, tmp_path, capsys):
    phrases = tmp_path / "phrases.txt"
    phrases.write_bytes(b"the red building\nthe caf\xe9 roof\n")
    assert main(["segment", str(scene), "--phrases-file", str(phrases), "-o", str(tmp_path / "r.gpkg"),
                 *TINY]) == 2
    error, hint = error_lines(capsys.readouterr().err)
    assert "byte 0xe9 at byte position 24 (line 2)" in error and "iconv" in hint
    assert not list(tmp_path.glob("r.*"))


def test_a_phrases_file_with_a_byte_order_mark_is_read(scene, tmp_path, capsys):
    phrases = tmp_path / "phrases.txt"
    phrases.write_bytes("\ufeffthe red building\n\nthe café roof\n".encode())
    out = tmp_path / "r.gpkg"
    assert main(["segment", str(scene), "--phrases-file", str(phrases), "-o", str(out), *TINY]) == 0
    assert set(pyogrio.raw.read(out)[3][0]) <= {"the red building", "the café roof"}
    assert "'the café roof':" in capsys.readouterr().out


def test_resolution_and_all_matches_options(scene, tmp_path, capsys):
    out = tmp_path / "r.gpkg"
    assert main(["segment", str(scene), "the tank", "-o", str(out), *TINY, "--all-matches",
                 "--threshold", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "resolution: 0.5 m/px (automatic: native, the model records no training resolution)" in printed
    assert main(["segment", str(scene), "the tank", "-o", str(out), *TINY, "--overwrite",
                 "--resolution", "native"]) == 0
    assert "resolution: 0.5 m/px (the raster's native resolution)" in capsys.readouterr().out
    assert main(["segment", str(scene), "the tank", "-o", str(out), *TINY, "--overwrite",
                 "--resolution", "0.75"]) == 0
    assert "resolution: 0.75 m/px (requested)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["segment", str(scene), "the tank", "-o", str(out), *TINY, "--resolution", "fine"])
    assert "expected 'auto', 'native' or a positive number" in capsys.readouterr().err


@pytest.mark.parametrize(("case", "code", "words"), [
    ("missing output folder", 2, "does not exist"),
    ("output is a folder", 2, "is a folder or a device"),
    ("missing phrases file", 2, "cannot read"),
    ("empty phrases file", 2, "no phrase given"),
    ("raster without a CRS", 3, "coordinate reference system"),
    ("existing output", 7, "already exists"),
])
def test_bad_requests_are_refused_before_the_model_loads(scene, tmp_path, capsys, case, code, words):
    out, extra, raster = tmp_path / "r.gpkg", ["the tank"], scene
    if case == "missing output folder":
        out = tmp_path / "nope" / "r.gpkg"
    elif case == "output is a folder":
        out.mkdir()
    elif case == "missing phrases file":
        extra = ["--phrases-file", str(tmp_path / "none.txt")]
    elif case == "empty phrases file":
        (tmp_path / "empty.txt").write_text("\n  \n")
        extra = ["--phrases-file", str(tmp_path / "empty.txt")]
    elif case == "raster without a CRS":
        raster = write_geotiff(tmp_path / "plain.tif", np.zeros((3, 32, 32), np.uint8), crs=None)
    else:
        out.with_suffix(".geojson").write_text("{}")
    # A checkpoint that does not exist: reaching the model would fail differently (exit 4).
    argv = ["segment", str(raster), *extra, "-o", str(out), "--checkpoint", str(tmp_path / "missing.safetensors")]
    assert main(argv) == code
    error, _ = error_lines(capsys.readouterr().err)
    assert words in error
