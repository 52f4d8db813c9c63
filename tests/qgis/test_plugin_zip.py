"""The installable ZIP is complete: QGIS's own plugin loader loads the plugin from the unpacked archive."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import qgis.utils
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "rsrefseg2_qgis"
# What plugins.qgis.org requires in metadata.txt, plus what this plugin declares.
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "hasProcessingProvider", "tags", "category", "icon")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    (path,) = out.glob(f"{PLUGIN}-*.zip")
    return path


def test_zip_has_one_plugin_folder_with_code_backend_and_resources(plugin_zip: Path) -> None:
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {name.split("/")[0] for name in names} == {PLUGIN}
    for required in ("metadata.txt", "LICENSE", "__init__.py", "backend/__init__.py", "backend/protocol.py",
                     "backend/model/__init__.py", "resources/icon.svg", "resources/sample/sample.tif"):
        assert f"{PLUGIN}/{required}" in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n
                or "/training/" in n or "/.venv/" in n]


def test_zip_is_reproducible(plugin_zip: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / plugin_zip.name).read_bytes() == plugin_zip.read_bytes()


def test_qgis_loads_and_unloads_the_plugin_from_the_unpacked_zip(qgis_iface, plugin_zip: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    plugins_dir = tmp_path / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins_dir)

    found = dict(qgis.utils.findPlugins(str(plugins_dir)))
    assert PLUGIN in found, "QGIS does not recognise the unpacked folder as a plugin"
    metadata = found[PLUGIN]
    for field in REQUIRED_METADATA:
        assert metadata.get("general", field).strip(), field
    assert metadata.get("general", "qgisMinimumVersion") == "3.22"
    # Without it QGIS reads 3.99 and QGIS 4 refuses to install the plugin.
    assert metadata.get("general", "qgisMaximumVersion") == "4.99"

    # Import the plugin from the unpacked archive, not from the checkout (restored after the test).
    saved_modules = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == PLUGIN}
    for name in saved_modules:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(plugins_dir))
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(plugins_dir)])
    monkeypatch.setattr(qgis.utils, "available_plugins", [])
    monkeypatch.setattr(qgis.utils, "plugins_metadata_parser", {})
    qgis.utils.updateAvailablePlugins()  # what QGIS does at start-up: read metadata, track the plugin's modules
    assert PLUGIN in qgis.utils.available_plugins
    errors: list[str] = []  # QGIS's loader reports a plugin's exceptions through showException, then returns False
    monkeypatch.setattr(qgis.utils, "showException",
                        lambda kind, value, tb, msg, *args, **kwargs: errors.append(f"{msg}: {kind.__name__}: {value}"))
    try:
        assert qgis.utils.loadPlugin(PLUGIN), errors
        assert Path(sys.modules[PLUGIN].__file__).resolve().is_relative_to(plugins_dir.resolve())
        actions_before = len(qgis_iface.mainWindow().findChildren(QAction))
        assert qgis.utils.startPlugin(PLUGIN), errors
        assert PLUGIN in qgis.utils.active_plugins
        assert qgis.utils.unloadPlugin(PLUGIN), errors
        assert PLUGIN not in qgis.utils.plugins
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert len(qgis_iface.mainWindow().findChildren(QAction)) == actions_before
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == PLUGIN]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
