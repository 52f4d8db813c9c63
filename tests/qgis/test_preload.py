"""Opening the dock loads the model in the background, so the first query does not wait for it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from qgis_helpers import wait_until

import rsrefseg2_qgis
from rsrefseg2_qgis import paths


def _checkpoint_with_meta(folder: Path) -> Path:
    """The demo checkpoint, copied with a title, a purpose and a training scale in its sidecar's ``meta``."""
    demo = paths.demo_checkpoint()
    copy = Path(shutil.copy(demo, folder / "described.safetensors"))
    sidecar = json.loads(demo.with_suffix(".json").read_text(encoding="utf-8"))
    sidecar["meta"] = {"title": "Test model", "description": "for tests only", "gsd_range_m": [0.3, 2.0]}
    copy.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return copy


def test_opening_the_dock_preloads_the_model_without_blocking(qgis_iface, tmp_path: Path) -> None:
    plugin = rsrefseg2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    checkpoint = _checkpoint_with_meta(tmp_path)
    plugin.dock.checkpoint_widget.setFilePath(str(checkpoint))
    qgis_iface.mainWindow().show()  # as in QGIS: a dock is shown (and told so) only in a visible window
    try:
        loaded = []
        plugin.preloader.loaded.connect(lambda spec, info: loaded.append((spec, info)))
        started = time.monotonic()
        plugin.actions[0].setChecked(True)  # the toolbar button opens the dock
        assert time.monotonic() - started < 1.0, "the GUI thread must not wait for the worker"
        assert plugin.preloader.busy
        assert wait_until(lambda: bool(loaded), 180), plugin.dock.status_label.text()
        spec, info = loaded[0]
        assert spec.checkpoint == str(checkpoint) and info.device
        # The worker's Load reply carries the checkpoint's meta: the dock shows what the model is, not its file.
        # One line: the title, then the precision the worker chose and why; the purpose is in the tooltips.
        assert info.precision in ("fp32", "bf16") and info.precision_reason
        assert plugin.dock.model_label.text() == f"Model: Test model · {info.precision} ({info.precision_reason})"
        assert str(checkpoint) in plugin.dock.model_label.toolTip()
        assert "Test model — for tests only" in plugin.dock.model_info_button.toolTip()
        assert info.scale.gsd_range_m == (0.3, 2.0)
        started = time.monotonic()
        spec.load(plugin.client())  # what the first query does: the worker already holds this model
        assert time.monotonic() - started < 0.1
    finally:
        plugin.unload()
        qgis_iface.mainWindow().hide()


def test_a_model_that_cannot_load_says_why_in_the_dock(qgis_iface, tmp_path) -> None:
    from rsrefseg2_qgis.client import BackendClient
    from rsrefseg2_qgis.dock import SegmentDock
    from rsrefseg2_qgis.preload import ModelPreloader
    from rsrefseg2_qgis.settings import PluginSettings

    client = BackendClient(python=tmp_path / "no-python", backend_root=paths.backend_root())
    preloader = ModelPreloader(client=lambda: client)
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings())
    failures = []
    preloader.failed.connect(lambda spec, text: failures.append(text))
    preloader.failed.connect(dock.show_model_error)
    dock.preload_requested.connect(preloader.preload)
    dock.show()
    assert wait_until(lambda: bool(failures), 30)
    assert "Worker Python" in failures[0] and dock.status_label.text() == failures[0]
    dock.unload()
    dock.deleteLater()
