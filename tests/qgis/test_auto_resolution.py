"""The automatic resolution of layers the plugin reads itself: the model's training scale, in the layer's units."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY, QgsRasterLayer, QgsRectangle

from rsrefseg2_qgis.auto_resolution import ModelScale, automatic_resolution, metres_per_map_unit
from rsrefseg2_qgis.raster_source import RasterInputError, plan_raster
from rsrefseg2_qgis.requests import RESOLUTION_AUTO

MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
SCALE = ModelScale(gsd_range_m=(0.3, 2.0), input_size=256)
LATITUDE = 48.2


def _mercator_square(side_m: float) -> QgsRectangle:
    """A square of ``side_m`` ground metres around (16.4° E, 48.2° N) in Web Mercator units."""
    y = math.log(math.tan(math.pi / 4 + math.radians(LATITUDE) / 2)) * 6378137.0
    x = math.radians(16.4) * 6378137.0
    half = side_m / math.cos(math.radians(LATITUDE)) / 2
    return QgsRectangle(x - half, y - half, x + half, y + half)


def test_web_mercator_units_are_ground_metres_over_cos_latitude() -> None:
    centre = _mercator_square(100).center()
    assert metres_per_map_unit(MERCATOR, centre) == pytest.approx(math.cos(math.radians(LATITUDE)), rel=0.01)
    assert metres_per_map_unit(WGS84, QgsPointXY(16.4, LATITUDE)) == pytest.approx(74_300, rel=0.01)


@pytest.mark.parametrize(("side_m", "expected_m"), [(256.0, 1.0), (5_000.0, 2.0), (40.0, 0.3)])
def test_view_mode_reads_the_view_at_the_model_input_clamped_to_its_range(side_m: float, expected_m: float) -> None:
    extent = _mercator_square(side_m)
    resolution = automatic_resolution(crs=MERCATOR, extent=extent, scale=SCALE, search="view", fallback=None)
    per_unit = metres_per_map_unit(MERCATOR, extent.center())
    assert resolution * per_unit == pytest.approx(expected_m, rel=0.01)


def test_geographic_layers_get_degrees_and_find_all_clamps_the_fallback() -> None:
    extent = QgsRectangle(16.40, LATITUDE, 16.405, LATITUDE + 0.003)  # about 370 m wide
    degrees = automatic_resolution(crs=WGS84, extent=extent, scale=SCALE, search="view", fallback=None)
    assert degrees * 74_300 == pytest.approx(371 / 256, rel=0.02) and degrees < 1e-4
    found = automatic_resolution(crs=WGS84, extent=extent, scale=SCALE, search="find-all", fallback=1e-6)
    assert found * 74_300 == pytest.approx(0.3, rel=0.02)  # 0.07 m native: raised to the model's finest


def test_without_a_model_range_the_fallback_is_used() -> None:
    extent = _mercator_square(300)
    assert automatic_resolution(crs=MERCATOR, extent=extent, scale=ModelScale(), search="view", fallback=0.7) == 0.7
    assert automatic_resolution(crs=MERCATOR, extent=extent, scale=ModelScale(), search="view", fallback=None) is None


def test_file_layers_send_auto_to_the_worker_and_check_size_at_native(raster_layer: QgsRasterLayer) -> None:
    plan = plan_raster(raster_layer, None, RESOLUTION_AUTO, max_pixels=10**6)
    assert plan.resolution == RESOLUTION_AUTO and plan.size == (512, 512)
    with pytest.raises(RasterInputError, match="Mpx"):
        plan_raster(raster_layer, None, RESOLUTION_AUTO, max_pixels=1000)


def test_the_plugin_and_the_protocol_agree_on_auto() -> None:
    from rsrefseg2_qgis import paths

    protocol = paths.load_protocol()
    assert protocol.RESOLUTION_AUTO == RESOLUTION_AUTO and protocol.Segment(
        id="x", raster="r.tif", phrases=("a",), output_dir="o").resolution == RESOLUTION_AUTO


def test_a_web_map_with_auto_needs_the_model_scale(tmp_path: Path) -> None:
    layer = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0",
                           "xyz", "wms")
    with pytest.raises(RasterInputError, match="no native resolution"):
        plan_raster(layer, QgsRectangle(0, 0, 100, 100), RESOLUTION_AUTO, max_pixels=10**6)
