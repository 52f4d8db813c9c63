"""The dock's status line never keeps an error after the state changed (issue 25: "messages go stale").

The real plugin, a real bare venv as the Worker Python, the real settings dialog: the query's "this Python lacks …"
error is shown, the user picks a working Python, and the error goes; the next query answers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox
from qgis_helpers import PYTHON, wait_until

import rsrefseg2_qgis
from rsrefseg2_qgis import paths
from rsrefseg2_qgis.settings import PREFIX, PYTHON_ENV, PluginSettings
from rsrefseg2_qgis.settings_dialog import SettingsDialog


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    return paths.venv_python(tmp_path / "bare")


@pytest.fixture
def plugin(qgis_iface, raster_layer, bare_python, monkeypatch) -> Iterator[rsrefseg2_qgis.RSRefSeg2Plugin]:
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    saved = PluginSettings.load()
    PluginSettings(device="cpu", python=str(bare_python)).save()
    loaded = rsrefseg2_qgis.classFactory(qgis_iface)
    loaded.initGui()
    loaded.dock.layer_combo.setLayer(raster_layer)
    yield loaded
    loaded.unload()
    QgsSettings().remove(PREFIX.rstrip("/"))
    saved.save()
    QgsProject.instance().removeAllMapLayers()


def _query(plugin, outcomes: list) -> None:
    dock = plugin.dock
    dock.set_drawn_extent(QgsRectangle(603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0),
                          QgsCoordinateReferenceSystem("EPSG:32633"))
    dock.phrase_box.setEditText("the large white storage tank")
    count = len(outcomes)
    dock.request_run()
    assert wait_until(lambda: len(outcomes) > count, 180), dock.status_label.text()


def _choose_python_in_settings(plugin, python: Path) -> None:
    def operate() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        dialog.python_widget.setFilePath(str(python))
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(0, operate)
    plugin.edit_settings()


def test_an_error_goes_once_the_worker_python_is_fixed(plugin, bare_python) -> None:
    outcomes: list = []
    plugin.runner.outcome_ready.connect(outcomes.append)
    _query(plugin, outcomes)
    assert outcomes[-1].status == "failed"
    shown = plugin.dock.status_label.text()
    assert f"This Python ({bare_python}) lacks" in shown and "Worker Python" in shown, shown

    _choose_python_in_settings(plugin, PYTHON)
    assert PluginSettings.load().python == str(PYTHON)
    assert "lacks" not in plugin.dock.status_label.text()  # the error it had went with the setting it was about

    _query(plugin, outcomes)
    assert outcomes[-1].status == "done", outcomes[-1].text


def test_a_newer_status_is_not_cleared_with_the_old_error(plugin, bare_python) -> None:
    outcomes: list = []
    plugin.runner.outcome_ready.connect(outcomes.append)
    _query(plugin, outcomes)
    plugin.dock.status_label.setText("Rectangle drawn: 128 × 128 map units")  # what the user did since
    _choose_python_in_settings(plugin, PYTHON)
    assert plugin.dock.status_label.text() == "Rectangle drawn: 128 × 128 map units"
