"""Outputs: GeoJSON and GeoPackage written atomically, read back, never overwritten by accident."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from backend.errors import BackendError
from backend.output.vectorize import vectorize
from backend.output.writing import PhraseDetections, output_paths, write_outputs

UTM = CRS.from_epsg(32633)


def layers():
    probs = np.zeros((30, 30), np.float32)
    probs[2:8, 2:8] = 0.9
    probs[20:25, 10:28] = 0.7
    dets = vectorize(probs, Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0), UTM)
    return [PhraseDetections("the tank", tuple(dets[:1])), PhraseDetections("the building", tuple(dets[1:])),
            PhraseDetections("a ship", ())]


def test_both_formats_round_trip(tmp_path):
    paths = write_outputs(layers(), UTM, output_paths(str(tmp_path), "result"), model="tiny", checkpoint="none")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.geojson", "result.gpkg"]
    for path in paths.values():
        info = pyogrio.read_info(path)
        assert info["features"] == 2 and CRS.from_user_input(info["crs"]) == UTM
        _, _, geometry, fields = pyogrio.raw.read(path)
        names = list(info["fields"])
        assert names == ["query", "score", "area_m2", "model", "checkpoint"]
        assert list(fields[0]) == ["the tank", "the building"]
        np.testing.assert_allclose(fields[1], [0.9, 0.7], rtol=1e-6)
        np.testing.assert_allclose(fields[2], [9.0, 22.5], rtol=1e-3)  # ground area: UTM scale 0.9996 at 500 km E
        assert list(fields[3]) == ["tiny", "tiny"]
        tank = shapely.from_wkb(geometry[0])
        assert tank.bounds == (500001.0, 3999996.0, 500004.0, 3999999.0)


def test_never_overwrites_unless_asked(tmp_path):
    paths = output_paths(str(tmp_path), "result")
    write_outputs(layers()[:1], UTM, paths, model="tiny", checkpoint="none")
    before = {p: Path(p).read_bytes() for p in paths.values()}
    with pytest.raises(BackendError) as info:
        write_outputs(layers(), UTM, paths, model="tiny", checkpoint="none")
    assert info.value.code == "output_exists" and "overwrite" in info.value.hint
    assert {p: Path(p).read_bytes() for p in paths.values()} == before
    write_outputs(layers(), UTM, paths, model="tiny", checkpoint="none", overwrite=True)
    assert pyogrio.read_info(paths["gpkg"])["features"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.geojson", "result.gpkg"]  # no temp files


def test_any_valid_file_name_is_written(tmp_path):
    # GeoPackage reserves layer names starting with "gpkg"; the layer gets another name, the file the one asked.
    # (A write failing half-way is tested in test_write_failures.py.)
    paths = write_outputs(layers(), UTM, output_paths(str(tmp_path), "gpkg_tanks"), model="m", checkpoint="c")
    assert pyogrio.list_layers(paths["gpkg"])[0][0] == "layer_gpkg_tanks"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpkg_tanks.geojson", "gpkg_tanks.gpkg"]


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(BackendError) as info:
        write_outputs(layers(), UTM, output_paths(str(tmp_path / "nope"), "r"), model="m", checkpoint="c")
    assert info.value.code == "bad_request"
