"""The worker's warnings about an answer reach the QGIS user, and Processing's Minimum area works (issue 25).

A view read at 0.25 m/px on the 0.5 m sample is finer than the raster and far finer than the demo model's
0.6–2 m/px: the dock's status line and the message bar say so after the answer (a Warning, not a Success), and
Processing pushes both warnings to its log.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMessageBar
from qgis_helpers import wait_until

from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.settings import PluginSettings

ALGORITHM = "rsrefseg2:referringsegmentation"
CORNER = (603_168.0, 5_339_828.0, 603_216.0, 5_339_860.0)  # xmin, ymin, xmax, ymax: the grey tank's corner
TANK_AND_HOUSE = "603168,603248,5339804,5339860 [EPSG:32633]"  # the sample's pixels 336–496 × 280–392
FINER = "the view is read at 0.25 m/px, finer than the raster's 0.5 m/px: upsampling invents no detail"
FAR_FINER = "the view is read at 0.25 m/px, far finer than the 0.6–2 m/px the model was trained at"


class WarningFeedback(QgsProcessingFeedback):
    """Keeps the warnings the algorithm pushes to the Processing log, and its progress texts."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []
        self.texts: list[str] = []

    def setProgressText(self, text: str) -> None:  # noqa: N802 (QGIS's name)
        self.texts.append(text)
        super().setProgressText(text)

    def pushWarning(self, warning: str) -> None:  # noqa: N802 (QGIS's name)
        self.warnings.append(warning)
        super().pushWarning(warning)


@pytest.fixture
def provider(qgis_processing, worker_client):
    registered = RSRefSeg2Provider(client=lambda: worker_client)
    QgsApplication.processingRegistry().addProvider(registered)
    yield registered
    QgsApplication.processingRegistry().removeProvider(registered)


def _parameters(raster: Path, out: Path, **changes) -> dict:
    xmin, ymin, xmax, ymax = CORNER
    parameters = {"INPUT": str(raster), "PHRASE": "all storage tanks", "DEVICE": "cpu", "RESOLUTION": 0.25,
                  "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:32633]", "OUTPUT": str(out)}
    return {**parameters, **changes}


def test_processing_pushes_the_workers_warnings_to_its_log(provider, sample_tif, tmp_path) -> None:
    import processing

    feedback = WarningFeedback()
    processing.run(ALGORITHM, _parameters(sample_tif, tmp_path / "fine.gpkg"), feedback=feedback)
    assert [w.split(": ", 1)[1][:len(FINER)] for w in feedback.warnings[:1]] == [FINER], feedback.warnings
    assert len(feedback.warnings) == 2 and FAR_FINER in feedback.warnings[1], feedback.warnings
    assert not [text for text in feedback.texts if FINER in text], "each warning is logged once, as a warning"
    native = WarningFeedback()
    processing.run(ALGORITHM, _parameters(sample_tif, tmp_path / "native.gpkg", RESOLUTION=0.5), feedback=native)
    assert native.warnings == []


def test_processing_minimum_area_is_an_advanced_parameter_in_square_metres(provider, sample_tif, tmp_path) -> None:
    import processing

    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    minimum = algorithm.parameterDefinition("MIN_AREA")
    assert minimum.flags() & QgsProcessingParameterDefinition.Flag.FlagAdvanced
    assert minimum.defaultValue() is None and "m²" in minimum.description()
    areas = {}
    for name, value in (("model", None), ("zero", 0.0), ("large", 20.0)):
        out = tmp_path / f"{name}.gpkg"
        changes = {"SEARCH": 1, "EXTENT": TANK_AND_HOUSE, **({} if value is None else {"MIN_AREA": value})}
        processing.run(ALGORITHM, _parameters(sample_tif, out, **changes))
        layer = QgsVectorLayer(str(out), name, "ogr")
        areas[name] = sorted(f["area_m2"] for f in layer.getFeatures())
        del layer
    assert min(areas["zero"]) < 5.76 <= min(areas["model"]), areas  # the demo model's default: (4 · 0.6 m)²
    assert areas["large"] and min(areas["large"]) >= 20.0, areas
    assert areas["model"] == [a for a in areas["zero"] if a >= 5.76]


def test_the_dock_and_the_message_bar_show_the_warnings_after_the_answer(qgis_iface, raster_layer,
                                                                         worker_client) -> None:
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu"))
    dock.layer_combo.setLayer(raster_layer)
    bar = QgsMessageBar()
    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(), message_bar=bar,
                           max_pixels=lambda: 10**7)
    outcomes = []
    dock.run_requested.connect(runner.submit)
    runner.outcome_ready.connect(outcomes.append)
    runner.status_changed.connect(dock.status_label.setText)
    dock.set_drawn_extent(QgsRectangle(*CORNER), QgsCoordinateReferenceSystem("EPSG:32633"))
    dock.resolution_spin.setValue(0.25)
    dock.phrase_box.setEditText("the grey tank")
    dock.request_run()
    assert wait_until(lambda: len(outcomes) == 1, 120), [o.text for o in outcomes]
    (outcome,) = outcomes
    assert outcome.status == "done", outcome.text
    assert len(outcome.warnings) == 2 and outcome.warnings[0].startswith(FINER)
    status = dock.status_label.text()
    assert f"Warning: {FINER}" in status and FAR_FINER in status, status
    assert status.index("Warning:") < status.index("Read at")  # the warnings come first, in sentences
    shown = bar.currentItem()
    assert shown is not None and shown.level() == Qgis.MessageLevel.Warning and FINER in shown.text()
    dock.unload()
    dock.deleteLater()
    QgsProject.instance().removeAllMapLayers()
