"""The dock as a user meets it (issue 25): controls that stay put, one-line model names, the right model named
after a restart, plain wording, and a Restart that brings up a fresh worker with the chosen model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qgis.core import QgsProject
from qgis.PyQt.QtCore import QPoint
from qgis.PyQt.QtWidgets import QApplication, QPushButton
from qgis_helpers import wait_until

import rsrefseg2_qgis
from rsrefseg2_qgis import paths
from rsrefseg2_qgis.auto_resolution import ModelScale
from rsrefseg2_qgis.client import WorkerError, sentence
from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.preload import ModelInfo
from rsrefseg2_qgis.settings import PREFIX, PluginSettings

LONG_DESCRIPTION = " ".join(["A trained RSRefSeg 2 model for aerial scenes, measured on the test split."] * 8)


@pytest.fixture
def dock(qgis_iface, raster_layer) -> Iterator[SegmentDock]:
    widget = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu"))
    widget.layer_combo.setLayer(raster_layer)
    yield widget
    widget.unload()
    widget.deleteLater()


def _button_places(dock: SegmentDock) -> dict[str, QPoint]:
    QApplication.processEvents()
    body = dock.widget()
    return {button.text(): button.mapTo(body, QPoint(0, 0)) for button in body.findChildren(QPushButton)}


def test_buttons_stay_put_while_status_progress_and_model_change(dock) -> None:
    """A first Cancel click used to miss: the buttons jumped 17-40 px with every status or progress change."""
    dock.resize(340, 560)
    dock.show()
    before = _button_places(dock)
    assert {"Run", "Cancel", "Diagnostics", "Restart"} <= set(before)
    dock.set_busy(True)
    dock.progress_bar.setValue(37)
    dock.status_label.setText("Tile 3 of 12: the worker reports a long line of progress that wraps over several "
                              "lines in a narrow dock,\nand a second line,\nand a third,\nand a fourth.")
    info = ModelInfo(title="A model with a long title", description=LONG_DESCRIPTION, model="rsrefseg2 (tiny)",
                     device="cpu", scale=ModelScale())
    dock.show_model(dock.load_spec(), info)
    assert _button_places(dock) == before
    dock.status_label.setText("")
    dock.set_busy(False)
    assert _button_places(dock) == before
    assert LONG_DESCRIPTION in dock.model_info_button.toolTip()  # the description is one hover away
    assert "\n" not in dock.model_label.text() and LONG_DESCRIPTION not in dock.model_label.text()
    dock.hide()


def test_the_long_status_is_kept_whole_in_its_tooltip(dock) -> None:
    text = "error: one. hint: " + "do this; " * 40
    dock.status_label.setText(text)
    assert dock.status_label.toolTip() == text


def test_after_a_restart_the_model_box_names_the_demo_model(qgis_iface, raster_layer) -> None:
    """Settings saved by a run with the demo model (its path) come back as "Demo model", not "Checkpoint file…"."""
    demo = paths.demo_checkpoint()
    assert demo is not None
    widget = SegmentDock(iface=qgis_iface, settings=PluginSettings(checkpoint=str(demo)))
    assert widget.model_combo.currentText().startswith("Demo model")
    assert widget.load_spec().checkpoint == str(demo)
    widget.unload()
    widget.deleteLater()


def test_a_layer_is_described_in_words(dock, raster_layer) -> None:
    assert dock.status_label.text() == "“sample” is read from its file."


def test_message_and_hint_read_as_two_sentences() -> None:
    error = WorkerError("not_loaded", "no model is loaded — send a 'load' request before 'segment'",
                        "press Restart in the dock")
    assert str(error) == "No model is loaded — send a 'load' request before 'segment'. Press Restart in the dock."
    assert sentence("Done.") == "Done." and sentence("") == ""


@pytest.fixture
def plugin(qgis_iface, raster_layer) -> Iterator[rsrefseg2_qgis.RSRefSeg2Plugin]:
    saved = PluginSettings.load()
    PluginSettings(device="cpu").save()
    loaded = rsrefseg2_qgis.classFactory(qgis_iface)
    loaded.initGui()
    yield loaded
    loaded.unload()
    from qgis.core import QgsSettings

    QgsSettings().remove(PREFIX.rstrip("/"))
    saved.save()


def test_restart_brings_up_a_fresh_worker_that_loads_the_chosen_model(plugin) -> None:
    """The real plugin, worker and demo model: Restart replaces the worker process and loads the model again."""
    loaded = []
    plugin.preloader.loaded.connect(lambda spec, info: loaded.append(spec))
    plugin.iface.mainWindow().show()  # as in QGIS: a dock is shown (and told so) only in a visible window
    plugin.actions[0].setChecked(True)
    assert wait_until(lambda: len(loaded) == 1, 180), plugin.dock.status_label.text()
    first = plugin.client().pid
    assert first is not None
    plugin.dock.restart_button.click()
    assert plugin.dock.status_label.text() == "The backend worker was restarted."
    assert wait_until(lambda: len(loaded) == 2, 180), plugin.dock.status_label.text()
    assert loaded[1] == plugin.dock.load_spec() and loaded[1].checkpoint == str(paths.demo_checkpoint())
    second = plugin.client().pid
    assert second is not None and second != first
    plugin.actions[0].setChecked(False)
    plugin.iface.mainWindow().hide()
    QgsProject.instance().removeAllMapLayers()


def test_loading_the_model_is_said_only_when_it_loads(raster_layer, worker_client, tmp_path) -> None:
    """"Loading the model…" showed at 5 % of every query, although the worker held the model already."""
    from qgis.core import QgsRectangle
    from qgis_helpers import tiny_request

    from rsrefseg2_qgis.query import run_query
    from rsrefseg2_qgis.raster_source import plan_raster

    quarter = (603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0)
    worker_client.shutdown()  # a worker that holds no model yet
    texts: list[list[str]] = []
    for run in range(2):
        texts.append([])
        request = tiny_request(raster_layer.id(), extent=quarter)
        plan = plan_raster(raster_layer, QgsRectangle(*quarter), None, max_pixels=10**7)
        work = tmp_path / str(run)
        work.mkdir()
        run_query(client=worker_client, request=request, plan=plan, work_dir=work,
                  on_progress=lambda _fraction, text, seen=texts[-1]: seen.append(text), is_cancelled=lambda: False)
    assert "Loading the model…" in texts[0]
    assert "Loading the model…" not in texts[1] and "Segmenting…" in texts[1]


def test_a_worker_python_without_our_packages_is_told_so_not_called_a_bug(tmp_path) -> None:
    """A real bare venv as Worker Python: it answered "No module named 'numpy' — this is a bug"."""
    import subprocess
    import sys

    from rsrefseg2_qgis.client import BackendClient

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    client = BackendClient(python=paths.venv_python(tmp_path / "bare"), backend_root=paths.backend_root())
    try:
        with pytest.raises(WorkerError) as raised:
            client.load(checkpoint=str(paths.demo_checkpoint()), config=None, device="cpu")
    finally:
        client.shutdown()
    assert raised.value.code == "environment" and "lacks torch, torchvision, numpy" in raised.value.message
    assert "Settings… → Worker Python" in raised.value.hint and "bug" not in str(raised.value)
