"""Automatic resolution: the clamp of INTERFACES item 2, in ground metres whatever the CRS's units."""

from __future__ import annotations

import math

import pytest
from rasterio.crs import CRS

from backend.raster.resolution import choose_resolution, ground_metres_per_unit

UTM = CRS.from_epsg(32633)
RANGE = (0.8, 1.2)
M_PER_DEGREE_LAT_45 = 111_132.0  # WGS84 meridian arc per degree at 45°


def choose(requested="auto", *, crs=UTM, native=(0.5, 0.5), extent=(256.0, 256.0), centre=(500000.0, 4e6),
           mode="view", gsd=RANGE):
    return choose_resolution(requested, crs=crs, native=native, extent_size=extent, centre=centre, mode=mode,
                             input_size=256, gsd_range_m=gsd)


@pytest.mark.parametrize(("extent", "mode", "expected"), [
    ((256.0, 128.0), "view", 1.0),      # the longer side fills the 256 px input at 1 m/px
    ((2000.0, 300.0), "view", 1.2),
    ((50.0, 50.0), "view", 0.8),
    ((5000.0, 5000.0), "find-all", 0.8),  # native 0.5 m clamped; the extent does not matter
])
def test_utm_clamps_into_the_trained_range(extent, mode, expected):
    choice = choose(extent=extent, mode=mode)
    assert choice.resolution == pytest.approx(expected, rel=1e-3)  # UTM's scale factor: within 0.1 %
    assert choice.note == f"{expected:g} m/px (automatic: the model was trained at 0.8–1.2 m/px)"


def test_native_inside_the_range_is_read_as_is():
    assert choose(native=(1.0, 1.0), mode="find-all").resolution is None


def test_geographic_degrees_are_converted_at_the_centre_latitude():
    # A 0.01° square at 45° N: 786 m east-west, 1111 m north-south → 4.3 m/px at the input, clamped to 1.2 m.
    mx, my = ground_metres_per_unit(CRS.from_epsg(4326), 10.0, 45.0, 1e-5)
    assert my == pytest.approx(M_PER_DEGREE_LAT_45, rel=1e-3)
    assert mx == pytest.approx(my * math.cos(math.radians(45)), rel=5e-3)
    choice = choose(crs=CRS.from_epsg(4326), native=(1e-5, 1e-5), extent=(0.01, 0.01), centre=(10.0, 45.0))
    assert choice.resolution == pytest.approx(1.2 / math.sqrt(mx * my), rel=1e-6)  # pixel area = (1.2 m)²
    assert choice.note.startswith("1.28e-05°/px ≈ 1.2 m/px (automatic")


def test_web_mercator_metres_shrink_with_latitude():
    # At 60° N a Web Mercator "metre" is half a ground metre: a 1-unit raster is 0.5 m, clamped to 0.8 m = 1.6 units.
    y = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(60) / 2))
    choice = choose(crs=CRS.from_epsg(3857), native=(1.0, 1.0), centre=(0.0, y), mode="find-all")
    assert choice.resolution == pytest.approx(1.6, rel=3e-3)
    assert "≈ 0.8 m/px" in choice.note


def test_no_range_requested_and_native():
    assert choose(gsd=None).resolution is None and "no training resolution" in choose(gsd=None).note
    assert choose(None).resolution is None and choose(None).note == "0.5 m/px (the raster's native resolution)"
    assert choose(0.3).resolution == 0.3 and choose(0.3).note == "0.3 m/px (requested)"


def test_a_crs_without_earth_falls_back_to_its_units():
    local = CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1]]')
    assert ground_metres_per_unit(local, 0.0, 0.0, 1.0) == (1.0, 1.0)
    assert choose(crs=local, centre=(0.0, 0.0)).resolution == pytest.approx(1.0)


@pytest.mark.parametrize("broken", [(0.0, 1.0), (-1.0, 2.0), (float("nan"), 1.0)])
def test_a_broken_recorded_range_counts_as_none(broken):
    choice = choose(gsd=broken)
    assert choice.resolution is None and "no training resolution" in choice.note
