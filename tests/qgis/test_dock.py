"""The dock builds requests from its widgets; Run goes through the runner and the task manager to a layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle
from qgis_helpers import wait_until

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.auto_resolution import ModelScale, metres_per_map_unit
from rsrefseg2_qgis.dock import EXTENT_DRAWN, SegmentDock
from rsrefseg2_qgis.preload import LoadSpec, ModelInfo
from rsrefseg2_qgis.raster_source import RasterInputError
from rsrefseg2_qgis.requests import RESOLUTION_AUTO
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
    assert request.extent is None and request.resolution == RESOLUTION_AUTO and request.device == "cpu"
    assert request.all_matches is False
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
    # 128 m / 256 px, clamped to the model's 0.6–2; a sentence of its own (the message bar shows one line)
    assert " s. Read at 0.6 m/px (automatic" in dock.status_label.text()
    assert dock.phrase_box.findText("the small grey tank") >= 0
    QgsProject.instance().removeAllMapLayers()


def test_an_idle_progress_bar_shows_no_percentage(dock) -> None:
    assert dock.progress_bar.text() == ""
    dock.set_busy(True)
    dock.progress_bar.setValue(40)
    assert dock.progress_bar.text() == "40%"
    dock.set_busy(False)
    assert dock.progress_bar.text() == "" and dock.progress_bar.value() == 0


def test_resolution_defaults_to_the_models_scale_and_all_matches_is_an_option(dock) -> None:
    assert dock.resolution_spin.value() == 0 and dock.resolution_spin.text() == "automatic (model's scale)"
    dock.phrase_box.setEditText("the pond")
    dock.all_matches_check.setChecked(True)
    dock.resolution_spin.setValue(1.5)
    request = dock.build_request()
    assert request.all_matches and request.resolution == 1.5


def test_the_model_is_named_by_its_title_never_by_a_path(dock) -> None:
    demo = str(paths.demo_checkpoint())
    assert "/" not in dock.model_label.text() and Path(demo).stem in dock.model_label.text()
    assert dock.model_label.toolTip() == demo
    info = ModelInfo(title="Demo model", description="synthetic scenes only", model="rsrefseg2 (tiny)",
                     device="cpu", scale=ModelScale())
    dock.show_model(dock.load_spec(), info)
    assert dock.model_label.text() == "Model: Demo model"  # one line; the description is in the tooltips
    assert demo in dock.model_label.toolTip() and "synthetic scenes only" in dock.model_info_button.toolTip()
    stale = LoadSpec(checkpoint="/elsewhere/old.safetensors", config=None)
    dock.show_model(stale, ModelInfo(title="Old", description="", model="", device="cpu", scale=ModelScale()))
    assert "Demo model" in dock.model_label.text()  # a late reply for an earlier choice changes nothing


def test_opening_the_dock_or_changing_the_model_asks_for_a_preload(dock, tmp_path) -> None:
    asked = []
    dock.preload_requested.connect(asked.append)
    dock.show()
    assert asked == [dock.load_spec()] and asked[0].checkpoint == str(paths.demo_checkpoint())
    dock.checkpoint_widget.setFilePath(str(tmp_path / "other.safetensors"))
    assert asked[-1].checkpoint == str(tmp_path / "other.safetensors")
    dock.hide()


def test_a_web_map_is_read_at_the_models_scale(dock, tmp_path) -> None:
    web = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0", "xyz", "wms")
    QgsProject.instance().addMapLayer(web)
    dock.layer_combo.setLayer(web)
    dock.phrase_box.setEditText("the pond")
    square = QgsRectangle(1_825_000, 6_140_000, 1_825_400, 6_140_400)  # 400 map units ≈ 267 m at 48° N
    dock.set_drawn_extent(square, web.crs())
    info = ModelInfo(title="", description="", model="m", device="cpu",
                     scale=ModelScale(gsd_range_m=(0.3, 2.0), input_size=256))
    dock.show_model(dock.load_spec(), info)
    request = dock.build_request()
    resolution = request.resolution
    assert request.resolution_note == f"{resolution:.3g} m/px (automatic: the model was trained at 0.3–2 m/px)"
    metres = resolution * metres_per_map_unit(web.crs(), square.center())
    assert metres == pytest.approx(400 * metres_per_map_unit(web.crs(), square.center()) / 256, rel=0.01)


def test_two_phrases_give_different_objects_through_the_docks_default_path(qgis_iface, raster_layer,
                                                                           worker_client) -> None:
    """Issue 10: the defaults (demo model, automatic resolution, default refinement) answer the phrase asked."""
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu"))
    dock.layer_combo.setLayer(raster_layer)
    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(), max_pixels=lambda: 10**7)
    outcomes = []
    dock.run_requested.connect(runner.submit)
    runner.outcome_ready.connect(outcomes.append)
    for phrase in ("the red building at the top left", "the large pond"):
        dock.phrase_box.setEditText(phrase)
        dock.request_run()
    assert wait_until(lambda: len(outcomes) == 2, 300), [o.text for o in outcomes]
    assert [o.status for o in outcomes] == ["done", "done"], [o.text for o in outcomes]
    building, pond = ([f.geometry() for f in o.layer.getFeatures()] for o in outcomes)
    assert len(building) == 1 and len(pond) == 1, "a referring phrase names one object"
    overlap = building[0].intersection(pond[0]).area() / building[0].combine(pond[0]).area()
    assert overlap < 0.2, f"the two phrases found the same place (IoU {overlap:.2f})"
    dock.unload()
    dock.deleteLater()
    QgsProject.instance().removeAllMapLayers()


def test_edited_settings_load_the_model_again(dock) -> None:
    asked = []
    dock.preload_requested.connect(asked.append)
    dock.show()
    dock.apply_settings(PluginSettings(device="cpu", sam_weights="/weights/sam.pth"))
    assert len(asked) == 2 and asked[-1].sam_weights == "/weights/sam.pth"
    dock.hide()
