"""The dock's Refine map tool in real QGIS: the demo model through the real worker, clicks as ``QgsMapMouseEvent``s
on a real canvas showing the sample; the answer's layer is edited in place and Undo restores it."""

from __future__ import annotations

import pytest
from osgeo import gdal
from qgis.core import QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent
from qgis_helpers import tiny_request, wait_until

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.notices import Notices
from rsrefseg2_qgis.raster_source import plan_raster
from rsrefseg2_qgis.refine_tool import RefineMapTool
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.settings import PluginSettings
from rsrefseg2_qgis.tasks.segment_task import SegmentTask

PHRASE = "the red building at the top left"


@pytest.fixture
def answered(qgis_iface, qgis_canvas, raster_layer, worker_client):
    """The dock after the demo model answered ``PHRASE`` on the whole sample, with the canvas on the sample."""
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu"))
    dock.layer_combo.setLayer(raster_layer)
    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(),
                           message_bar=qgis_iface.messageBar(), max_pixels=lambda: 10**7)
    outcomes = []
    dock.run_requested.connect(runner.submit)
    runner.outcome_ready.connect(outcomes.append)
    runner.outcome_ready.connect(lambda outcome: dock.offer_refinement(outcome, worker_client, runner.notices))
    qgis_canvas.setDestinationCrs(raster_layer.crs())
    qgis_canvas.setLayers([raster_layer])
    extent = raster_layer.extent()
    extent.grow(100.0)  # room for a click outside the raster
    qgis_canvas.setExtent(extent)
    qgis_canvas.refresh()
    dock.phrase_box.setEditText(PHRASE)
    dock.request_run()
    assert wait_until(lambda: len(outcomes) == 1, 180), "the query did not end"
    assert outcomes[0].status == "done" and outcomes[0].layer.featureCount() > 0, outcomes[0].text
    yield dock, outcomes[0].layer
    dock.unload()
    dock.deleteLater()
    QgsProject.instance().removeAllMapLayers()


def _union(layer) -> QgsGeometry:
    return QgsGeometry.unaryUnion([feature.geometry() for feature in layer.getFeatures()])


def _click(canvas, point: QgsPointXY, button: Qt.MouseButton,
           modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> QgsPointXY:
    """Press and release ``button`` on the canvas at ``point`` (map CRS) through the active map tool; returns
    the map point the release event carries (the pixel the point falls on)."""
    pixel = canvas.getCoordinateTransform().transform(point)
    position = QPoint(round(pixel.x()), round(pixel.y()))
    tool = canvas.mapTool()
    press = QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonPress, position, button, button, modifiers)
    release = QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, position, button,
                               Qt.MouseButton.NoButton, modifiers)
    tool.canvasPressEvent(press)
    tool.canvasReleaseEvent(release)
    return release.mapPoint()


def test_an_exclude_click_edits_the_layer_in_place_and_undo_restores_it(answered, qgis_canvas) -> None:
    dock, layer = answered
    assert dock.refine_button.isEnabled() and not dock.undo_button.isEnabled()
    before = _union(layer)
    inside = before.pointOnSurface().asPoint()
    dock.refine_button.setChecked(True)
    tool = dock.refine_tool
    assert qgis_canvas.mapTool() is tool

    messages = []
    tool.message.connect(messages.append)
    clicked = _click(qgis_canvas, inside, Qt.MouseButton.RightButton)
    assert before.contains(QgsGeometry.fromPointXY(clicked)), "the click must land on the answer's object"
    assert tool.task is not None, "the refinement runs as a background task"
    assert wait_until(lambda: tool.task is None, 120), "the refinement did not end"
    assert QgsProject.instance().mapLayer(layer.id()) is layer, "the same layer is edited"
    after = _union(layer)
    assert not after.contains(QgsGeometry.fromPointXY(clicked)), dock.status_label.text()
    assert {feature["clicks"] for feature in layer.getFeatures()} <= {1}
    assert messages and messages[-1].endswith("after 1 click"), messages  # counted, not "click(s)"
    assert tool.drawn_items == 1 and dock.undo_button.isEnabled()

    dock.undo_button.click()
    assert _union(layer).equals(before), "Undo puts the answer before the click back"
    assert not dock.undo_button.isEnabled()

    # Shift+left click is an exclude point too; Ctrl+Z undoes it.
    _click(qgis_canvas, inside, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    assert wait_until(lambda: tool.task is None, 120)
    assert not _union(layer).contains(QgsGeometry.fromPointXY(clicked))
    assert tool.edits[-1].clicks[-1].include is False
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier))
    assert _union(layer).equals(before)

    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier))
    assert qgis_canvas.mapTool() is not tool and not dock.refine_button.isChecked()
    assert tool.drawn_items == 0


def test_a_click_outside_the_view_is_refused_and_nothing_is_sent(answered, qgis_canvas, raster_layer) -> None:
    dock, layer = answered
    before = _union(layer)
    dock.refine_button.setChecked(True)
    tool = dock.refine_tool
    outside = QgsPointXY(raster_layer.extent().xMaximum() + 50.0, raster_layer.extent().center().y())
    _click(qgis_canvas, outside, Qt.MouseButton.LeftButton)
    assert tool.task is None and tool.edits == []
    assert "outside the view" in dock.status_label.text()
    assert _union(layer).equals(before) and "clicks" not in layer.fields().names()


def test_a_layer_read_through_a_temp_geotiff_says_run_the_phrase_again(sample_tif, qgis_iface, qgis_canvas,
                                                                      worker_client) -> None:
    memory_path = "/vsimem/rsrefseg2_refine.tif"
    gdal.Translate(memory_path, str(sample_tif))
    layer = QgsRasterLayer(memory_path, "in memory", "gdal")
    QgsProject.instance().addMapLayer(layer)
    try:
        corners = (603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0)  # the north-west quarter: a quick query
        quarter = QgsRectangle(*corners)
        plan = plan_raster(layer, quarter, None, max_pixels=10**7)
        task = SegmentTask(request=tiny_request(layer.id(), extent=corners), plan=plan,
                           client=worker_client, project=QgsProject.instance())
        ok = task.run()
        task.finished(ok)
        assert ok and task.outcome.source is not None, task.outcome
        result = task.outcome.layer
        before = [feature.geometry().asWkt() for feature in result.getFeatures()]
        qgis_canvas.setDestinationCrs(layer.crs())
        qgis_canvas.setExtent(quarter)
        tool = RefineMapTool(qgis_canvas, layer=result, source=task.outcome.source, client=worker_client,
                             notices=Notices(qgis_iface.messageBar()))
        messages = []
        tool.message.connect(messages.append)
        qgis_canvas.setMapTool(tool)
        _click(qgis_canvas, quarter.center(), Qt.MouseButton.LeftButton)
        assert wait_until(lambda: tool.task is None, 60)
        assert "run the phrase again" in messages[-1]
        assert tool.edits == [] and [feature.geometry().asWkt() for feature in result.getFeatures()] == before
        qgis_canvas.unsetMapTool(tool)
    finally:
        QgsProject.instance().removeAllMapLayers()
        gdal.Unlink(memory_path)


def test_a_drag_sets_the_box_and_a_geopackage_answer_is_edited_in_its_file(raster_layer, qgis_canvas,
                                                                           worker_client, tmp_path) -> None:
    gpkg = tmp_path / "answers.gpkg"
    request = tiny_request(raster_layer.id(), phrase=PHRASE, checkpoint=str(paths.demo_checkpoint()), config=None,
                           output_gpkg=str(gpkg))
    task = SegmentTask(request=request, plan=plan_raster(raster_layer, None, None, max_pixels=10**7),
                       client=worker_client, project=QgsProject.instance())
    ok = task.run()
    task.finished(ok)
    assert ok and task.outcome.layer.featureCount() > 0, task.outcome
    result = task.outcome.layer
    assert result.providerType() == "ogr"
    before = _union(result)
    qgis_canvas.setDestinationCrs(raster_layer.crs())
    qgis_canvas.setExtent(raster_layer.extent())
    tool = RefineMapTool(qgis_canvas, layer=result, source=task.outcome.source, client=worker_client)
    qgis_canvas.setMapTool(tool)

    box = before.boundingBox().buffered(10.0)
    to_pixel = qgis_canvas.getCoordinateTransform()
    start, end = to_pixel.transform(box.xMinimum(), box.yMaximum()), to_pixel.transform(box.xMaximum(), box.yMinimum())
    start, end = QPoint(round(start.x()), round(start.y())), QPoint(round(end.x()), round(end.y()))
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    tool.canvasPressEvent(QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseButtonPress, start, left, left))
    tool.canvasMoveEvent(QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseMove, end, none, left))
    assert tool.drawn_items == 1, "the box is drawn while dragging"
    tool.canvasReleaseEvent(QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseButtonRelease, end, left, none))
    assert wait_until(lambda: tool.task is None, 120)
    (edit,) = tool.edits
    assert edit.clicks == () and QgsRectangle(*edit.box).contains(box.buffered(-2.0))
    assert tool.drawn_items == 1, "the applied box stays on the map"
    saved = QgsVectorLayer(f"{gpkg}|layername={result.source().split('layername=')[1]}", "read back", "ogr")
    assert saved.isValid() and {feature["clicks"] for feature in saved.getFeatures()} == {1}
    assert saved.featureCount() == result.featureCount() > 0

    tool.undo()
    assert _union(result).equals(before)
    qgis_canvas.unsetMapTool(tool)
    assert tool.drawn_items == 0
    QgsProject.instance().removeAllMapLayers()
