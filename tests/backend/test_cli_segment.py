"""``python -m backend segment``: help a GIS user can read, real runs with the tiny model, errors and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from rasters import write_geotiff

from backend.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", "tiny", "--device", "cpu", "--tile-size", "128", "--overlap", "16"]


@pytest.fixture
def scene(tmp_path):
    data = (np.random.default_rng(3).random((3, 300, 300)) * 200).astype(np.uint8)
    return write_geotiff(tmp_path / "scene.tif", data)


def test_help_speaks_gis():
    done = subprocess.run([sys.executable, "-m", "backend", "segment", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    for words in ("map units", "CRS", "--extent", "--find-all", "--resolution", "GeoPackage", "--bands", "--refine",
                  "full resolution"):
        assert words in done.stdout


def test_segment_writes_both_files_and_prints_summaries(scene, tmp_path, capsys):
    out = tmp_path / "result.gpkg"
    code = main(["segment", str(scene), "the white tank", "a red roof", "-o", str(out), *TINY,
                 "--extent=500010,3999870,500140,3999990"])
    assert code == 0
    captured = capsys.readouterr()
    assert "'the white tank':" in captured.out and "'a red roof':" in captured.out
    assert out.exists() and out.with_suffix(".geojson").exists()
    assert pyogrio.read_info(out)["crs"] == "EPSG:32633"
    assert "%" in captured.err  # the tqdm bar went to stderr


@pytest.mark.parametrize("refine", ["prompts", "phrase", "box", "none"])
def test_every_refinement_runs_from_the_command_line(scene, tmp_path, refine):
    # The 300² scene at its own resolution is larger than the tiny model's 256² input: the refine pass runs.
    out = tmp_path / f"{refine}.gpkg"
    assert main(["segment", str(scene), "the white tank", "-o", str(out), "--config", "tiny", "--device", "cpu",
                 "--refine", refine, "--threshold", "0.01"]) == 0
    assert pyogrio.read_info(out)["crs"] == "EPSG:32633"


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["   "], 2, "phrase"),
    (["tank", "--bands", "1,2,9"], 3, "band 9"),
    (["tank", "--extent=0,0,1,1"], 3, "does not overlap"),
    (["tank", "--extent=5,5,1,1"], 2, "xmin < xmax"),
    (["tank", "--pixels", "0,0,10,10", "--extent=0,0,1,1"], 2, "both"),
])
def test_errors_are_two_lines_with_exit_codes(scene, tmp_path, capsys, argv, code, words):
    assert main(["segment", str(scene), *argv, "-o", str(tmp_path / "o.gpkg"), *TINY]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("error: ") and words in err[-2]
    assert err[-1].startswith("hint: ")
    assert not (tmp_path / "o.gpkg").exists()


def test_not_a_raster_and_existing_output(tmp_path, scene, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["segment", str(text), "tank", "-o", str(tmp_path / "a.gpkg"), *TINY]) == 3
    (tmp_path / "b.gpkg").write_bytes(b"keep")
    assert main(["segment", str(scene), "tank", "-o", str(tmp_path / "b.gpkg"), *TINY]) == 7
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "b.gpkg").read_bytes() == b"keep"


def test_without_a_checkpoint_the_bundled_demo_model_answers_and_is_named(scene, tmp_path, capsys):
    """It stopped with "no checkpoint given" although a demo model is bundled (the dock's default)."""
    out = tmp_path / "demo.gpkg"
    code = main(["segment", str(scene), "the white tank", "-o", str(out), "--device", "cpu",
                 "--extent=500010,3999870,500140,3999990"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "model: the bundled demo model (demo-synthetic.safetensors" in captured.out
    assert out.exists()
    _meta, _fids, _geometry, fields = pyogrio.raw.read(out)
    assert set(fields[list(_meta["fields"]).index("checkpoint")]) <= {"demo-synthetic.safetensors"}


def test_the_answering_model_is_printed_for_a_config_too(scene, tmp_path, capsys):
    assert main(["segment", str(scene), "the white tank", "-o", str(tmp_path / "t.gpkg"), *TINY,
                 "--extent=500010,3999870,500140,3999990"]) == 0
    assert "model: config tiny (random weights) — rsrefseg2" in capsys.readouterr().out


def test_summaries_count_polygons_in_words_not_with_a_parenthesised_plural(scene, tmp_path, capsys):
    import re

    from backend.batch.run import summary_lines
    from backend.errors import counted

    assert [counted(n, "polygon") for n in (0, 1, 3)] == ["0 polygons", "1 polygon", "3 polygons"]
    assert counted(2, "match", "matches") == "2 matches"
    counts = set()
    for mode in ([], ["--find-all", "--threshold", "0.3"]):
        out = tmp_path / f"counted{len(mode)}.gpkg"
        assert main(["segment", str(scene), "the white tank", "-o", str(out), *TINY, *mode]) == 0
        stdout = capsys.readouterr().out
        (found,) = re.findall(r"^'the white tank': (\d+) (polygons?), best score", stdout, re.MULTILINE)
        count = int(found[0])
        assert found[1] == ("polygon" if count == 1 else "polygons") and "(s)" not in stdout
        assert count == pyogrio.read_info(out)["features"]  # the count said is the count written
        counts.add(count)
    lines = summary_lines({"done": 1, "parts": 1, "failed": 0, "skipped_as_done": 0, "ran_now": 1, "runner": "local",
                           "seconds": 1.0, "polygons": {"a": 1, "b": 4}, "failures": {}, "merged": {}})
    assert lines[1:] == ["'a': 1 polygon merged", "'b': 4 polygons merged"]
