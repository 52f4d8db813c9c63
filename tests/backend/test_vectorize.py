"""Vectorisation: polygons land where the pixels are, holes and areas are right, seams are merged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from backend.output.vectorize import area_m2, vectorize
from backend.raster.tiling import ProbabilityCanvas, tile_grid

UTM = CRS.from_epsg(32633)
UTM_GRID = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)
# On UTM's central meridian a map metre is 0.9996 ground metres: ellipsoidal area = planar / 0.9996².
UTM_CENTRAL_SCALE = 0.9996


def test_square_lands_at_its_map_coordinates_with_ground_area():
    probs = np.zeros((40, 60), np.float32)
    probs[10:20, 30:50] = 0.9
    (det,) = vectorize(probs, UTM_GRID, UTM, threshold=0.5)
    assert det.geometry.bounds == (500015.0, 3999990.0, 500025.0, 3999995.0)
    assert det.area_m2 == pytest.approx(50.0 / UTM_CENTRAL_SCALE**2, rel=1e-5) and det.area_px == pytest.approx(200)
    assert det.score == pytest.approx(0.9)


def test_feet_crs_area_is_converted_to_square_metres():
    probs = np.zeros((10, 10), np.float32)
    probs[2:6, 2:6] = 1.0
    feet = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    (det,) = vectorize(probs, Affine(1, 0, 1e6, 0, -1, 2e5), feet)
    assert det.area_m2 == pytest.approx(16 * 0.3048006096**2, rel=1e-3)  # a state plane: ground ≈ map


def test_geographic_area_is_geodesic():
    probs = np.zeros((20, 20), np.float32)
    probs[5:15, 5:15] = 1.0
    step = 1e-4  # degrees per pixel near 50° N
    (det,) = vectorize(probs, Affine(step, 0, 10.0, 0, -step, 50.002), CRS.from_epsg(4326))
    lat0, lat1 = math.radians(50.002 - 15 * step), math.radians(50.002 - 5 * step)
    sphere = 6371007.2**2 * math.radians(10 * step) * (math.sin(lat1) - math.sin(lat0))
    assert det.geometry.bounds == pytest.approx((10.0005, 50.0005, 10.0015, 50.0015))
    assert det.area_m2 == pytest.approx(sphere, rel=5e-3)


def test_holes_kept_specks_dropped_simplification_in_map_units():
    probs = np.zeros((50, 50), np.float32)
    probs[5:25, 5:25] = 0.8
    probs[10:15, 10:15] = 0.0  # a hole
    probs[40, 40] = probs[40, 41] = 0.9  # a 2-pixel speck
    (det,) = vectorize(probs, UTM_GRID, UTM, min_area_px=5)
    assert len(det.geometry.interiors) == 1
    assert det.area_px == pytest.approx(400 - 25)
    stairs = np.zeros((40, 40), np.float32)
    stairs[np.tril_indices(40)] = 1.0
    plain = vectorize(stairs, UTM_GRID, UTM)[0].geometry
    simple = vectorize(stairs, UTM_GRID, UTM, simplify_tolerance=1.0)[0].geometry
    assert len(simple.exterior.coords) < len(plain.exterior.coords) / 4
    assert simple.area == pytest.approx(plain.area, rel=0.05)


def test_strip_seams_are_merged_with_holes_and_scores():
    probs = np.zeros((64, 32), np.float32)
    probs[5:60, 4:28] = 0.75
    probs[20:40, 10:20] = 0.0  # a hole crossing several strips
    probs[50:52, 0:2] = 0.95  # a separate object
    whole = vectorize(probs, UTM_GRID, UTM)
    strips = vectorize(probs, UTM_GRID, UTM, block_pixels=32 * 7)
    assert len(strips) == len(whole) == 2
    for a, b in zip(whole, strips, strict=True):
        assert a.geometry.equals(b.geometry)
        assert a.score == pytest.approx(b.score) and a.area_px == b.area_px
    assert len(strips[1].geometry.interiors) == 1


def test_object_cut_by_tile_borders_is_one_polygon():
    shape, tile = (200, 200), 64
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    truth = (yy - 100) ** 2 + (xx - 96) ** 2 < 45**2  # crosses the tile borders at 64 and 128

    with ProbabilityCanvas(shape=shape) as canvas:
        for t in tile_grid(shape, tile, 16):
            ty, tx = np.mgrid[t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width]
            canvas.write_core(t, ((ty - 100) ** 2 + (tx - 96) ** 2 < 45**2).astype(np.float32))
        detections = vectorize(canvas.array, UTM_GRID, UTM, block_pixels=200 * 50)
    assert len(detections) == 1
    assert detections[0].area_px == truth.sum()


def test_area_of_empty_map_is_nothing():
    assert vectorize(np.zeros((8, 8), np.float32), UTM_GRID, UTM) == []
    assert area_m2(vectorize(np.ones((2, 2), np.float32), UTM_GRID, UTM)[0].geometry, UTM) == pytest.approx(
        1 / UTM_CENTRAL_SCALE**2, rel=1e-5)
