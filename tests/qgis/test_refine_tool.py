"""The dock's Refine map tool in real QGIS: the demo model through the real worker, clicks as ``QgsMapMouseEvent``s
on a real canvas showing the sample; the answer's layer is edited in place and Undo restores it."""

from __future__ import annotations

import pytest
from qgis.core import QgsGeometry, QgsPointXY, QgsProject
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent
from qgis_helpers import wait_until

from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.settings import PluginSettings

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

    clicked = _click(qgis_canvas, inside, Qt.MouseButton.RightButton)
    assert before.contains(QgsGeometry.fromPointXY(clicked)), "the click must land on the answer's object"
    assert tool.task is not None, "the refinement runs as a background task"
    assert wait_until(lambda: tool.task is None, 120), "the refinement did not end"
    assert QgsProject.instance().mapLayer(layer.id()) is layer, "the same layer is edited"
    after = _union(layer)
    assert not after.contains(QgsGeometry.fromPointXY(clicked)), dock.status_label.text()
    assert {feature["clicks"] for feature in layer.getFeatures()} <= {1}
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
