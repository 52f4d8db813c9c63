"""Render the README screenshot: a map window with the dock and a result layer on the sample (offscreen).

``QT_QPA_PLATFORM=offscreen .venv/bin/python tests/qgis/make_screenshot.py [--out docs/screenshot.png]
[--phrase "..."]`` runs one real query through the dock, the runner, the task manager and the worker, then
grabs the window. Uses the bundled demo checkpoint when present, else the untrained tiny model; the dock names
the model by its title, as after its background load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pytest_qgis.mock_qgis_classes import MockMessageBar  # the stand-in iface the tests use too
from pytest_qgis.qgis_interface import QgisInterface
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtCore import QEventLoop, QSize, Qt, QTimer
from qgis.PyQt.QtWidgets import QMainWindow

ROOT = Path(__file__).resolve().parents[2]


def _wait(condition, seconds: float) -> None:
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() else None)
    timer.start(50)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _render(args: argparse.Namespace) -> None:
    """One query through the dock, then the window grabbed into ``args.out``."""
    from rsrefseg2_qgis import paths
    from rsrefseg2_qgis.client import BackendClient
    from rsrefseg2_qgis.dock import SegmentDock
    from rsrefseg2_qgis.preload import ModelInfo
    from rsrefseg2_qgis.runner import SegmentRunner
    from rsrefseg2_qgis.settings import PluginSettings

    window = QMainWindow()
    window.setWindowTitle("QGIS — RSRefSeg 2")
    canvas = QgsMapCanvas(window)
    window.setCentralWidget(canvas)
    iface = QgisInterface(canvas, MockMessageBar(), window)
    layer = QgsRasterLayer(str(ROOT / "resources" / "sample" / "sample.tif"), "sample", "gdal")
    QgsProject.instance().addMapLayer(layer)
    canvas.setDestinationCrs(layer.crs())
    client = BackendClient(python=paths.venv_python(ROOT / ".venv"), backend_root=paths.backend_root())
    dock = SegmentDock(iface=iface, settings=PluginSettings(device="cpu", tile_size=256, overlap=32), parent=window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    runner = SegmentRunner(client=lambda: client, project=QgsProject.instance(), max_pixels=lambda: 10**7)
    outcomes = []
    dock.run_requested.connect(runner.submit)
    runner.outcome_ready.connect(outcomes.append)
    runner.busy_changed.connect(dock.set_busy)
    runner.progress_changed.connect(dock.progress_bar.setValue)
    runner.status_changed.connect(dock.status_label.setText)
    dock.layer_combo.setLayer(layer)
    dock.phrase_box.setEditText(args.phrase)
    dock.resolution_spin.setValue(args.resolution)
    dock.request_run()
    _wait(lambda: bool(outcomes), 300)
    if not outcomes or outcomes[0].status != "done":
        sys.exit(f"the query failed: {outcomes[0].text if outcomes else 'timeout'}")
    spec = dock.load_spec()
    dock.show_model(spec, ModelInfo.from_reply(spec.load(client)))  # already loaded: answers at once
    canvas.setLayers([outcomes[0].layer, layer])
    canvas.setExtent(layer.extent())
    window.resize(QSize(1200, 720))
    window.show()
    canvas.refresh()
    _wait(lambda: not canvas.isDrawing(), 30)
    _wait(lambda: False, 1.5)  # let the final frame land
    args.out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(args.out))
    print(f"wrote {args.out}: {outcomes[0].text}")
    client.shutdown()
    dock.unload()
    outcomes.clear()
    canvas.setLayers([])
    QgsProject.instance().removeAllMapLayers()
    window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--phrase", default="the red building at the top left")
    parser.add_argument("--resolution", type=float, default=0.0,
                        help="ground resolution in map units; 0 = automatic (the model's training scale)")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QgsApplication([], True)
    app.initQgis()
    # Every layer and widget lives in ``_render`` and is gone when it returns: one still alive at exitQgis
    # crashed the interpreter's exit (rc 139).
    _render(args)
    app.exitQgis()


if __name__ == "__main__":
    main()
