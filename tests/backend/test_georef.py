"""Georeferencing end to end: a bright object in a real GeoTIFF → read through a view → polygon at its place.

The probability is a per-pixel function of the read pixels (the object is brighter than its surroundings), so
any shift, flip or scale error in the window/resolution/transform chain moves the polygon off the object.
"""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasters import write_geotiff

from backend.output.vectorize import vectorize
from backend.raster.reading import make_view, read_tile

# Object: source rows 40..80, cols 100..160 of a 200×300 raster.
ROWS, COLS = (40, 80), (100, 160)


def object_tif(tmp_path, crs, transform):
    data = np.full((3, 200, 300), 30, np.uint8)
    data[:, ROWS[0]:ROWS[1], COLS[0]:COLS[1]] = 220
    return write_geotiff(tmp_path / "object.tif", data, crs=crs, transform=transform)


def object_bounds(transform):
    x0, y0 = transform @ (COLS[0], ROWS[0])
    x1, y1 = transform @ (COLS[1], ROWS[1])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def polygons(view):
    data, _ = read_tile(view, 0, 0, *view.shape)
    return vectorize(data[0] / 255.0, view.transform, view.crs, threshold=0.5)


CASES = {
    "utm": ("EPSG:32633", Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)),
    "wgs84": ("EPSG:4326", Affine(1e-5, 0, 10.0, 0, -1e-5, 50.0)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("how", ["whole", "window", "resolution", "window+resolution"])
def test_polygon_lands_on_the_object(tmp_path, case, how):
    crs, transform = CASES[case]
    path = object_tif(tmp_path, crs, transform)
    expected = object_bounds(transform)
    pixel = transform.a
    kwargs = {}
    if "window" in how:  # an extent that cuts the raster around the object, off the pixel grid by 1/4 pixel
        x0, y0 = transform @ (70.25, 150.25)
        x1, y1 = transform @ (250.25, 10.25)
        kwargs["extent"] = (x0, y0, x1, y1)
    if "resolution" in how:
        kwargs["resolution"] = 2 * pixel  # 2× coarser: object edges fall on view pixel edges here
    view = make_view(str(path), **kwargs)
    (det,) = polygons(view)
    tolerance = view.resolution[0] * 0.51
    assert det.geometry.bounds == pytest.approx(expected, abs=tolerance)
    true_area = det.area_m2 / det.geometry.area * ((COLS[1] - COLS[0]) * (ROWS[1] - ROWS[0]) * pixel * pixel)
    assert det.area_m2 == pytest.approx(true_area, rel=0.06)
    assert CRS.from_user_input(crs) == view.crs


def test_geographic_area_is_metres_not_degrees(tmp_path):
    crs, transform = CASES["wgs84"]
    (det,) = polygons(make_view(str(object_tif(tmp_path, crs, transform))))
    # 60 × 40 pixels of 1e-5° at 50° N: ≈ 0.716 m × 1.112 m each.
    assert det.area_m2 == pytest.approx(60 * 40 * 0.7169 * 1.1123, rel=0.01)
