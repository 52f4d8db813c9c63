"""Ground areas on the ellipsoid: the same footprint gets the same ``area_m2`` in Web Mercator, UTM and degrees.

The footprint is a lon/lat rectangle (two meridians, two parallels) at 48° N, whose area on the WGS84 ellipsoid has
a closed form (the authalic-latitude integral), so the reference does not come from the code under test. In
EPSG:3857 and EPSG:4326 that footprint is an axis-aligned rectangle; in UTM its edges are densified before
projecting. Web Mercator's planar area is 2.2× too large there; the measured area must be within 1 %.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform, transform_geom
from shapely.geometry import box, mapping, shape

from backend.output.vectorize import area_m2, vectorize

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563
WEST, SOUTH, EAST, NORTH = 11.5, 48.1, 11.5004, 48.1003  # ≈ 30 × 33 m near Munich


def ellipsoidal_rectangle_area(west: float, south: float, east: float, north: float) -> float:
    """Area in m² on the WGS84 ellipsoid between two meridians and two parallels (degrees)."""
    e2 = WGS84_F * (2 - WGS84_F)
    e = math.sqrt(e2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return WGS84_A**2 * (1 - e2) / 2 * math.radians(east - west) * (q(north) - q(south))


TRUE_AREA = ellipsoidal_rectangle_area(WEST, SOUTH, EAST, NORTH)


def footprint_in(crs: CRS) -> shapely.Geometry:
    lonlat = shapely.segmentize(box(WEST, SOUTH, EAST, NORTH), 1e-6)
    return shape(transform_geom(CRS.from_epsg(4326), crs, mapping(lonlat)))


def test_reference_area_is_the_size_of_the_footprint():
    assert 950 < TRUE_AREA < 1050  # 0.0004° × 0.0003° at 48° N


@pytest.mark.parametrize("epsg", [3857, 32632, 4326])
def test_the_same_footprint_has_its_ellipsoidal_area_in_every_crs(epsg):
    crs = CRS.from_epsg(epsg)
    assert area_m2(footprint_in(crs), crs) == pytest.approx(TRUE_AREA, rel=0.01)


def test_web_mercator_planar_area_would_be_far_off():
    mercator = footprint_in(CRS.from_epsg(3857))
    assert mercator.area / TRUE_AREA > 2.2  # what map-unit area gave before
    assert area_m2(mercator, CRS.from_epsg(3857)) == pytest.approx(TRUE_AREA, rel=0.002)


def test_a_web_mercator_mask_gets_ground_area_through_vectorize():
    """A 40×30 px mask on a 3857 grid placed over the footprint: the detection's area is the footprint's."""
    (x0, x1), (y0, y1) = transform(CRS.from_epsg(4326), CRS.from_epsg(3857), [WEST, EAST], [SOUTH, NORTH])
    grid = Affine((x1 - x0) / 40, 0, x0, 0, -(y1 - y0) / 30, y1)
    probs = np.zeros((40, 50), np.float32)
    probs[:30, :40] = 0.9
    (det,) = vectorize(probs, grid, CRS.from_epsg(3857))
    assert det.area_m2 == pytest.approx(TRUE_AREA, rel=0.01)


def test_a_large_footprint_keeps_its_area_through_densified_edges():
    """A 0.4° × 0.3° rectangle (30 × 33 km): straight Mercator edges are parallels and meridians."""
    crs = CRS.from_epsg(3857)
    (x0, x1), (y0, y1) = transform(CRS.from_epsg(4326), crs, [11.0, 11.4], [48.0, 48.3])
    assert area_m2(box(x0, y0, x1, y1), crs) == pytest.approx(ellipsoidal_rectangle_area(11.0, 48.0, 11.4, 48.3),
                                                              rel=1e-3)


def test_a_local_engineering_grid_keeps_planar_area_in_its_units():
    local = CRS.from_wkt('LOCAL_CS["Site grid",LOCAL_DATUM["site",0],UNIT["metre",1],'
                         'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    assert area_m2(box(0, 0, 30, 20), local) == pytest.approx(600.0)
