"""The plugin loads into real QGIS, registers its parts, and unload() removes every one of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QDockWidget

import rsrefseg2_qgis

ROOT = Path(__file__).resolve().parents[2]

# Loads the plugin the way QGIS does (classFactory → initGui) in a fresh interpreter and reports what got imported.
FRESH_LOAD = """
import sys
from qgis.core import QgsApplication
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtWidgets import QMainWindow
from pytest_qgis.mock_qgis_classes import MockMessageBar
from pytest_qgis.qgis_interface import QgisInterface
app = QgsApplication([], True)
app.initQgis()
window = QMainWindow()
iface = QgisInterface(QgsMapCanvas(window), MockMessageBar(), window)
import rsrefseg2_qgis
plugin = rsrefseg2_qgis.classFactory(iface)
plugin.initGui()
heavy = sorted(name for name in ("torch", "numpy", "rasterio", "open_clip", "segment_anything", "backend")
               if name in sys.modules)
plugin.unload()
print("HEAVY=" + ",".join(heavy))
app.exitQgis()
"""


def test_loading_the_plugin_imports_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", FRESH_LOAD], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                                            "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr[-2000:]
    heavy = done.stdout.split("HEAVY=")[1].strip()
    assert "torch" not in heavy and "rasterio" not in heavy and "backend" not in heavy.split(","), heavy


def test_init_gui_and_unload_leave_nothing_behind(qgis_iface) -> None:
    window = qgis_iface.mainWindow()
    registry = QgsApplication.processingRegistry()
    actions_before = len(window.findChildren(QAction))
    plugin = rsrefseg2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    assert registry.providerById("rsrefseg2") is not None
    assert registry.algorithmById("rsrefseg2:referringsegmentation") is not None
    dock = plugin.dock
    assert window.findChildren(QDockWidget, "RSRefSeg2Dock") == [dock]
    toggle = plugin.actions[0]
    toggle.setChecked(True)
    assert not dock.isHidden()
    toggle.setChecked(False)
    assert dock.isHidden()

    plugin.unload()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert registry.providerById("rsrefseg2") is None
    assert sip.isdeleted(dock)
    assert window.findChildren(QDockWidget, "RSRefSeg2Dock") == []
    assert len(window.findChildren(QAction)) == actions_before
    assert plugin.actions == [] and plugin.dock is None
