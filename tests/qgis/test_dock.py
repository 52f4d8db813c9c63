"""The dock builds requests from its widgets; Run goes through the runner and the task manager to a layer."""

from __future__ import annotations

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis_helpers import wait_until

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.dock import EXTENT_DRAWN, SegmentDock
from rsrefseg2_qgis.raster_source import RasterInputError
from rsrefseg2_qgis.result_style import COLOUR_PROPERTY
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.settings import PluginSettings


@pytest.fixture
def dock(qgis_iface, raster_layer):
    widget = SegmentDock(iface=qgis_iface, settings=PluginSettings(history=("the red building",), device="cpu",
                                                                   tile_size=256, overlap=32))
    widget.layer_combo.setLayer(raster_layer)
    yield widget
    widget.unload()
    widget.deleteLater()


def test_dock_builds_a_frozen_request(dock, raster_layer) -> None:
    assert dock.phrase_box.itemText(0) == "the red building"
    with pytest.raises(RasterInputError, match="phrase"):
        dock.build_request()
    dock.phrase_box.setEditText("  the white tank ")
    request = dock.build_request()
    assert request.layer_id == raster_layer.id() and request.phrases == ("the white tank",)
    assert request.extent is None and request.resolution is None and request.device == "cpu"
    # With no checkpoint chosen, the dock defaults to the bundled demo model (a trained checkpoint).
    demo = paths.demo_checkpoint()
    assert demo is not None and demo.is_file()
    assert not request.untrained and request.checkpoint == str(demo) and request.config is None
    assert request.tile_size == 256
    with pytest.raises(AttributeError):
        request.phrases = ("x",)


def test_drawn_rectangle_in_another_crs_becomes_a_layer_extent(dock) -> None:
    dock.phrase_box.setEditText("the pond")
    with pytest.raises(RasterInputError, match="No rectangle"):
        dock.extent_combo.setCurrentIndex(dock.extent_combo.findData(EXTENT_DRAWN))
        dock.build_request()
    # About 603050..603100 E, 5339900..5339950 N (inside the sample), drawn on a WGS 84 canvas.
    rect = QgsRectangle(16.386953, 48.203953, 16.387614, 48.204411)
    dock.set_drawn_extent(rect, QgsCoordinateReferenceSystem("EPSG:4326"))
    xmin, ymin, xmax, ymax = dock.build_request().extent
    assert 603_040 < xmin < 603_060 and 603_090 < xmax < 603_110
    assert 5_339_890 < ymin < 5_339_910 and 5_339_940 < ymax < 5_339_960


def test_enter_runs_the_query_through_the_task_manager(dock, worker_client, qgis_iface) -> None:
    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(),
                           message_bar=qgis_iface.messageBar(), max_pixels=lambda: 10**7)
    outcomes = []
    dock.run_requested.connect(runner.submit)
    runner.outcome_ready.connect(outcomes.append)
    runner.busy_changed.connect(dock.set_busy)
    runner.progress_changed.connect(dock.progress_bar.setValue)
    runner.status_changed.connect(dock.status_label.setText)
    quarter = QgsRectangle(603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0)  # keeps the test quick
    dock.set_drawn_extent(quarter, QgsCoordinateReferenceSystem("EPSG:32633"))
    dock.phrase_box.setEditText("the large white storage tank")
    dock.phrase_box.lineEdit().returnPressed.emit()
    dock.phrase_box.setEditText("the small grey tank")
    dock.request_run()  # queued behind the first
    assert runner.busy and dock.cancel_button.isEnabled()
    assert wait_until(lambda: len(outcomes) == 2, 120), [o.text for o in outcomes]
    assert [o.status for o in outcomes] == ["done", "done"], [o.text for o in outcomes]
    names = [o.layer.name() for o in outcomes]
    assert names == ["rsrefseg: the large white storage tank", "rsrefseg: the small grey tank"]
    assert all(QgsProject.instance().mapLayer(o.layer.id()) is o.layer for o in outcomes)
    colours = {o.layer.customProperty(COLOUR_PROPERTY) for o in outcomes}
    assert len(colours) == 2 and None not in colours, "two phrases are told apart on the map"
    assert all(quarter.contains(o.layer.extent()) for o in outcomes if o.layer.featureCount())
    assert not runner.busy and not dock.cancel_button.isEnabled()
    assert dock.phrase_box.findText("the small grey tank") >= 0
    QgsProject.instance().removeAllMapLayers()


def test_an_idle_progress_bar_shows_no_percentage(dock) -> None:
    assert dock.progress_bar.text() == ""
    dock.set_busy(True)
    dock.progress_bar.setValue(40)
    assert dock.progress_bar.text() == "40%"
    dock.set_busy(False)
    assert dock.progress_bar.text() == "" and dock.progress_bar.value() == 0
