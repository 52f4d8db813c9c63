"""SegmentTask on the real worker (tiny random-init model): layers appear in the right CRS and place; cancel
and a killed worker leave nothing behind and say why; a non-file raster goes through the temp GeoTIFF."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import Qt
from qgis_helpers import tiny_request

from rsrefseg2_qgis.notices import Notices
from rsrefseg2_qgis.raster_source import plan_raster
from rsrefseg2_qgis.tasks.segment_task import SegmentTask

FIELDS = ["query", "score", "area_m2", "model", "checkpoint"]
# The sample's north-west quarter (256 × 256 px at 0.5 m): small enough to keep the tests quick.
QUARTER = (603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0)


def _task(layer: QgsRasterLayer, client, message_bar=None, extent=QUARTER, **changes) -> SegmentTask:
    notices = None if message_bar is None else Notices(message_bar)
    request = tiny_request(layer.id(), extent=extent, **changes)
    plan = plan_raster(layer, None if extent is None else QgsRectangle(*extent), None, max_pixels=10**7)
    return SegmentTask(request=request, plan=plan, client=client, project=QgsProject.instance(),
                       notices=notices)


def _result_layers() -> list:
    return [layer for layer in QgsProject.instance().mapLayers().values() if layer.name().startswith("rsrefseg:")]


def test_task_adds_a_polygon_layer_in_the_raster_crs_inside_its_extent(raster_layer, worker_client,
                                                                       qgis_iface) -> None:
    task = _task(raster_layer, worker_client, qgis_iface.messageBar())
    ok = task.run()
    task.finished(ok)
    assert ok, task.outcome
    assert task.outcome.status == "done"
    (layer,) = _result_layers()
    assert layer is task.outcome.layer
    assert layer.name() == "rsrefseg: the large white storage tank"
    assert layer.crs().authid() == "EPSG:32633"
    assert layer.fields().names() == FIELDS
    if layer.featureCount():
        assert QgsRectangle(*QUARTER).contains(layer.extent())
        assert {f["query"] for f in layer.getFeatures()} == {"the large white storage tank"}
    assert not task.work_dir.exists()
    count = layer.featureCount()
    wording = "1 object for" if count == 1 else f"{count} objects for"
    assert task.outcome.text.startswith(wording) and "object(s)" not in task.outcome.text
    assert "untrained" in task.outcome.text


def test_probability_raster_lies_under_the_polygons_beside_the_geopackage(raster_layer, worker_client,
                                                                          tmp_path: Path) -> None:
    gpkg = tmp_path / "answers.gpkg"
    task = _task(raster_layer, worker_client, probability=True, output_gpkg=str(gpkg))
    ok = task.run()
    task.finished(ok)
    assert ok and task.outcome.status == "done", task.outcome
    rasters = [layer for layer in QgsProject.instance().mapLayers().values()
               if isinstance(layer, QgsRasterLayer) and layer.name().endswith("(probability)")]
    assert len(rasters) == 1 and rasters[0].isValid()
    probability = rasters[0]
    assert Path(probability.source()).parent == tmp_path and Path(probability.source()).is_file()
    assert probability.crs().authid() == "EPSG:32633" and probability.renderer().type() == "singlebandpseudocolor"
    assert QgsRectangle(*QUARTER).contains(probability.extent().buffered(-0.01))
    order = [layer.id() for layer in QgsProject.instance().layerTreeRoot().layerOrder()]
    assert order.index(task.outcome.layer.id()) < order.index(probability.id())  # polygons drawn on top
    assert not task.work_dir.exists()


def test_cancel_mid_run_leaves_no_layer_and_no_file(raster_layer, worker_client, tmp_path: Path) -> None:
    gpkg = tmp_path / "out.gpkg"
    task = _task(raster_layer, worker_client, search="find-all", tile_size=64, overlap=8,
                 output_gpkg=str(gpkg))
    progress = []

    def cancel_once_the_worker_reports(text: str) -> None:
        progress.append(text)
        if task.progress() > 15 and not task.isCanceled():
            task.cancel()

    task.status_changed.connect(cancel_once_the_worker_reports, Qt.ConnectionType.DirectConnection)
    ok = task.run()
    task.finished(ok)
    assert not ok and task.outcome.status == "cancelled", task.outcome
    assert task.isCanceled() and len(progress) >= 3
    assert _result_layers() == [] and not gpkg.exists() and not task.work_dir.exists()


def test_killed_worker_gives_a_clear_message_and_the_next_query_works(raster_layer, worker_client,
                                                                      qgis_iface) -> None:
    task = _task(raster_layer, worker_client, qgis_iface.messageBar(), search="find-all", tile_size=64,
                 overlap=16)

    def kill_once_the_worker_reports(_text: str) -> None:
        if task.progress() > 15 and worker_client.running:
            worker_client.kill()

    task.status_changed.connect(kill_once_the_worker_reports, Qt.ConnectionType.DirectConnection)
    ok = task.run()
    task.finished(ok)
    assert not ok and task.outcome.status == "failed"
    assert "stopped unexpectedly" in task.outcome.text and "restarts" in task.outcome.text
    assert _result_layers() == []

    again = _task(raster_layer, worker_client)
    ok = again.run()
    again.finished(ok)
    assert ok and again.outcome.status == "done" and len(_result_layers()) == 1


def test_non_file_raster_goes_through_a_temp_geotiff_and_the_result_into_a_geopackage(
        sample_tif: Path, worker_client, tmp_path: Path) -> None:
    memory_path = "/vsimem/rsrefseg2_task.tif"
    gdal.Translate(memory_path, str(sample_tif))
    layer = QgsRasterLayer(memory_path, "in memory", "gdal")
    QgsProject.instance().addMapLayer(layer)
    gpkg = tmp_path / "kept.gpkg"
    try:
        task = _task(layer, worker_client, output_gpkg=str(gpkg))
        assert task.plan.file_path is None
        ok = task.run()
        task.finished(ok)
        assert ok, task.outcome
        (result,) = _result_layers()
        assert result.crs().authid() == "EPSG:32633"
        assert result.providerType() == "ogr" and result.source().startswith(str(gpkg))
        assert not task.work_dir.exists()  # the temp GeoTIFF is gone, the GeoPackage stays
        if result.featureCount():
            assert QgsRectangle(*QUARTER).contains(result.extent())
    finally:
        QgsProject.instance().removeAllMapLayers()
        gdal.Unlink(memory_path)


@pytest.fixture(autouse=True)
def _clean_project():
    yield
    QgsProject.instance().removeAllMapLayers()


def test_closing_the_project_mid_run_discards_the_result_without_crashing(sample_tif: Path,
                                                                         worker_client) -> None:
    layer = QgsRasterLayer(str(sample_tif), "doomed", "gdal")
    QgsProject.instance().addMapLayer(layer)
    task = _task(layer, worker_client)

    def close_project_once_the_worker_reports(_text: str) -> None:
        if task.progress() > 15 and QgsProject.instance().count():
            QgsProject.instance().clear()  # removes the source layer too

    task.status_changed.connect(close_project_once_the_worker_reports, Qt.ConnectionType.DirectConnection)
    ok = task.run()
    task.finished(ok)
    assert ok and task.outcome.status == "cancelled" and "closed" in task.outcome.text
    assert QgsProject.instance().count() == 0 and not task.work_dir.exists()
