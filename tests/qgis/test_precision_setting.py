"""Compute precision in the plugin: a setting (dialog, ``QgsSettings``) sent as ``load.precision``; the dock shows
what the real worker chose and why; a change of precision loads the model again."""

from __future__ import annotations

from dataclasses import replace

import pytest
from qgis.core import QgsProject, QgsSettings
from qgis_helpers import wait_until

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.preload import ModelInfo
from rsrefseg2_qgis.requests import PRECISIONS
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.settings import PREFIX, PluginSettings
from rsrefseg2_qgis.settings_dialog import SettingsDialog


@pytest.fixture
def store() -> QgsSettings:
    settings = QgsSettings("rsrefseg2-tests", "precision-test")
    settings.remove(PREFIX.rstrip("/"))
    yield settings
    settings.remove(PREFIX.rstrip("/"))


def test_the_plugins_precisions_are_the_workers() -> None:
    assert tuple(value for value, _ in PRECISIONS) == paths.load_protocol().PRECISIONS
    assert PluginSettings().precision == "auto"


def test_the_precision_setting_persists_and_an_unknown_one_is_dropped(store: QgsSettings) -> None:
    PluginSettings(precision="fp32").save(store)
    assert store.value(PREFIX + "precision") == "fp32" and PluginSettings.load(store).precision == "fp32"
    store.setValue(PREFIX + "precision", "fp16")  # e.g. hand-edited: the worker would refuse it
    assert PluginSettings.load(store).precision == "auto"


def test_the_settings_dialog_offers_automatic_fp32_and_bf16(store: QgsSettings) -> None:
    dialog = SettingsDialog(settings=PluginSettings(), default_python="/default/python")
    combo = dialog.precision_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Automatic", "fp32", "bf16"]
    assert combo.currentData() == "auto"
    combo.setCurrentIndex(combo.findData("fp32"))
    dialog.edited().save(store)
    dialog.deleteLater()
    again = SettingsDialog(settings=PluginSettings.load(store), default_python="/default/python")
    assert again.precision_combo.currentData() == "fp32" and again.edited().precision == "fp32"
    again.deleteLater()


def test_fp32_is_what_the_worker_loads_and_a_change_loads_again(qgis_iface, raster_layer, worker_client) -> None:
    """The demo model in the real worker: fp32 from the settings, then bf16 after the settings change."""
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu", precision="fp32"))
    dock.layer_combo.setLayer(raster_layer)
    spec = dock.load_spec()
    assert spec.precision == "fp32" and spec.checkpoint == str(paths.demo_checkpoint())
    reply = spec.load(worker_client)
    assert (reply.precision, reply.precision_reason) == ("fp32", "requested")
    dock.show_model(spec, ModelInfo.from_reply(reply))
    assert dock.model_label.text().endswith(" · fp32 (requested)"), dock.model_label.text()
    assert "fp32 (requested)" in dock.model_info_button.toolTip()

    asked = []
    dock.preload_requested.connect(asked.append)
    dock.show()
    dock.apply_settings(replace(dock.settings, precision="bf16"))  # what OK in the settings dialog does
    assert asked[-1].precision == "bf16" and asked[-1] == dock.load_spec()
    model = {"checkpoint": spec.checkpoint, "config": spec.config, "device": "cpu"}
    assert worker_client.holds(**model, precision="fp32") and not worker_client.holds(**model, precision="bf16")

    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(),
                           message_bar=qgis_iface.messageBar(), max_pixels=lambda: 10**7)
    outcomes = []
    runner.outcome_ready.connect(outcomes.append)
    dock.run_requested.connect(runner.submit)
    dock.phrase_box.setEditText("the large pond")
    dock.request_run()
    assert wait_until(lambda: bool(outcomes), 120)
    assert outcomes[0].status == "done", outcomes[0].text
    layer = outcomes[0].layer
    assert layer.featureCount() >= 1
    # The query loaded the model again, in bf16: the worker's description of the model says so.
    assert all(feature["model"].endswith("· bf16") for feature in layer.getFeatures())
    assert worker_client.holds(**model, precision="bf16")
    dock.hide()
    dock.unload()
    dock.deleteLater()
    QgsProject.instance().removeAllMapLayers()
