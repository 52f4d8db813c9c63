"""Raster layers to worker inputs: file layers by path + window, other providers through a temp GeoTIFF."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle
from qgis_helpers import write_xyz_tiles

from rsrefseg2_qgis.raster_source import (
    RasterInputError,
    check_size,
    extent_in_layer_crs,
    local_file_path,
    materialize,
    plan_raster,
)

ORIGIN_X, ORIGIN_Y, SIZE_M = 603_000.0, 5_340_000.0, 256.0  # the sample: 512 px at 0.5 m


def test_file_layer_is_sent_by_path_and_window(raster_layer: QgsRasterLayer, tmp_path: Path) -> None:
    extent = QgsRectangle(ORIGIN_X + 10, ORIGIN_Y - 110, ORIGIN_X + 110, ORIGIN_Y - 10)
    plan = plan_raster(raster_layer, extent, None, max_pixels=10**6)
    assert plan.file_path == raster_layer.source() and plan.provider is None
    assert plan.size == (200, 200) and plan.resolution is None
    assert plan.bands == (1, 2, 3)
    work = tmp_path / "work"
    work.mkdir()
    sent = materialize(plan, work)
    assert sent.raster == raster_layer.source()
    assert sent.window == pytest.approx((ORIGIN_X + 10, ORIGIN_Y - 110, ORIGIN_X + 110, ORIGIN_Y - 10))
    assert list(work.iterdir()) == []  # nothing copied for a file layer


def test_whole_file_layer_sends_no_window(raster_layer: QgsRasterLayer, tmp_path: Path) -> None:
    sent = materialize(plan_raster(raster_layer, None, 0.5, max_pixels=10**6), tmp_path)
    assert sent.window is None and sent.resolution is None  # 0.5 is the native resolution


def test_too_large_extent_is_refused_with_a_resolution_that_fits(raster_layer: QgsRasterLayer) -> None:
    with pytest.raises(RasterInputError) as info:
        plan_raster(raster_layer, None, 0.05, max_pixels=1_000_000)
    text = str(info.value)
    assert "5120 × 5120" in text and "26.2 Mpx" in text
    suggested = float(text.split("resolution of ")[1].split(" ")[0])
    check_size(int(SIZE_M / suggested) + 1, int(SIZE_M / suggested) + 1, suggested, 1_000_000)  # it fits


def test_canvas_extent_in_another_crs_is_transformed_and_clipped(raster_layer: QgsRasterLayer) -> None:
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    whole_world = QgsRectangle(-180, -85, 180, 85)
    clipped = extent_in_layer_crs(raster_layer, whole_world, wgs84)
    assert clipped == raster_layer.extent()
    with pytest.raises(RasterInputError, match="does not overlap"):
        extent_in_layer_crs(raster_layer, QgsRectangle(0, 0, 1, 1), wgs84)


def test_vsimem_layer_goes_through_a_temp_geotiff(sample_tif: Path, tmp_path: Path) -> None:
    memory_path = "/vsimem/rsrefseg2_test.tif"
    gdal.Translate(memory_path, str(sample_tif))
    layer = QgsRasterLayer(memory_path, "in memory", "gdal")
    try:
        assert layer.isValid() and local_file_path(layer) is None
        extent = QgsRectangle(ORIGIN_X, ORIGIN_Y - 64, ORIGIN_X + 128, ORIGIN_Y)
        plan = plan_raster(layer, extent, 1.0, max_pixels=10**6)
        assert plan.file_path is None and plan.size == (128, 64)
        sent = materialize(plan, tmp_path)
        assert sent.window is None and sent.resolution is None and sent.bands == (1, 2, 3)
        written = gdal.Open(sent.raster)
        assert (written.RasterXSize, written.RasterYSize, written.RasterCount) == (128, 64, 3)
        assert written.GetGeoTransform() == pytest.approx((ORIGIN_X, 1.0, 0.0, ORIGIN_Y, 0.0, -1.0))
        assert "UTM zone 33N" in written.GetProjection()
        assert written.GetRasterBand(1).Checksum() != 0
        written = None
    finally:
        del layer
        gdal.Unlink(memory_path)


def test_virtual_raster_provider_goes_through_a_temp_geotiff(raster_layer: QgsRasterLayer, tmp_path: Path) -> None:
    extent = f"{ORIGIN_X},{ORIGIN_Y - SIZE_M},{ORIGIN_X + SIZE_M},{ORIGIN_Y}"
    uri = (f"?crs=EPSG:32633&extent={extent}&width=256&height=256&formula=%22s@1%22"
           f"&s:uri={raster_layer.source()}&s:provider=gdal")
    layer = QgsRasterLayer(uri, "virtual", "virtualraster")
    assert layer.isValid(), layer.error().summary()
    plan = plan_raster(layer, None, None, max_pixels=10**6)
    assert plan.file_path is None and plan.size == (256, 256)
    sent = materialize(plan, tmp_path)
    written = gdal.Open(sent.raster)
    assert (written.RasterXSize, written.RasterYSize, written.RasterCount) == (256, 256, 1)
    assert written.GetGeoTransform()[1] == pytest.approx(1.0)
    written = None


def test_web_layer_without_native_resolution_needs_one(tmp_path: Path) -> None:
    layer = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0",
                           "xyz", "wms")
    assert layer.isValid()
    with pytest.raises(RasterInputError, match="no native resolution"):
        plan_raster(layer, QgsRectangle(0, 0, 100, 100), None, max_pixels=10**6)


def test_xyz_web_map_is_read_through_its_provider_at_the_chosen_resolution(sample_tif: Path,
                                                                           tmp_path: Path) -> None:
    x0, y0, x1, y1 = write_xyz_tiles(sample_tif, tmp_path / "tiles", zoom=18)
    layer = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmin=18&zmax=18",
                           "web map", "wms")
    assert layer.isValid() and layer.crs().authid() == "EPSG:3857"
    plan = plan_raster(layer, QgsRectangle(x0 + 20, y0 + 20, x1 - 20, y1 - 20), 0.6, max_pixels=10**6)
    assert plan.file_path is None
    work = tmp_path / "work"
    work.mkdir()
    sent = materialize(plan, work)
    assert sent.bands == (1, 2, 3) and Path(sent.raster).parent == work
    written = gdal.Open(sent.raster)
    assert (written.RasterXSize, written.RasterYSize) == plan.size and written.RasterCount == 4  # R, G, B, A
    assert "Pseudo-Mercator" in written.GetProjection()
    low, high = written.GetRasterBand(1).ComputeRasterMinMax(False)
    assert high > low  # real imagery, not an empty canvas
    written = None
