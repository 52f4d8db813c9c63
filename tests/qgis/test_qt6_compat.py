"""The plugin keeps to what Qt 5 (QGIS 3.22–3.44) and Qt 6 (QGIS 4) both offer through ``qgis.PyQt``.

QGIS 4 is not installable here, so the proof is twofold: ``scripts/check_qt6.py`` reads the source (it passes on the
plugin and fails on each Qt 5-only construct planted in a copy of it), and every module imports and every dialog and
the dock build in the real QGIS of this machine, so the code the check approved also runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.PyQt.QtWidgets import QApplication, QWidget

import rsrefseg2_qgis
from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.process_dialog import ProcessDialog, Step
from rsrefseg2_qgis.settings import PluginSettings
from rsrefseg2_qgis.settings_dialog import SettingsDialog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import check_qt6  # noqa: E402  (a script, not a package)

PLUGIN = ROOT / "rsrefseg2_qgis"


def _run_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The check as CI runs it (its own process)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_qt6.py"), *map(str, paths)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_plugin_passes_the_check() -> None:
    result = _run_check()
    assert result.returncode == 0, result.stdout + result.stderr


# (file in rsrefseg2_qgis/, text there, Qt 5-only replacement, the rule that must report it)
PLANTED = [
    ("plugin.py", "dialog.exec() ==", "dialog.exec_() ==", "QT601"),
    ("process_dialog.py", "QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel,",
     "QDialogButtonBox(QDialogButtonBox.Cancel,", "QT602"),
    ("plugin.py", "Qt.DockWidgetArea.RightDockWidgetArea", "Qt.RightDockWidgetArea", "QT602"),
    # a subclass defined in another module of the plugin inherits QDialog's members
    ("plugin.py", "SettingsDialog.DialogCode.Accepted", "SettingsDialog.Accepted", "QT602"),
    ("result_style.py", "QgsWkbTypes.GeometryType.PolygonGeometry", "QgsWkbTypes.PolygonGeometry", "QT602"),
    # QVariant.String outside the QGIS < 3.38 branch of the field-type fallback
    ("processing/shared.py", "text, number = QMetaType.Type.QString,",
     "text, number = QVariant.String,", "QT603"),
    ("process_dialog.py", "from qgis.PyQt.QtCore import QProcess,", "from qgis.PyQt.QtCore import QRegExp, QProcess,",
     "QT604"),
    ("plugin.py", "from qgis.PyQt.QtGui import QIcon", "from qgis.PyQt.QtGui import QAction, QIcon", "QT607"),
    ("plugin.py", "from qgis.PyQt.QtCore import Qt", "from PyQt5.QtCore import Qt", "QT606"),
    ("plugin.py", "import QAction, QInputDialog", "import QAction, QDesktopWidget, QInputDialog", "QT605"),
    ("plugin.py", "main_window = self.iface.mainWindow()", "main_window = QApplication.desktop()", "QT605"),
    ("plugin.py", "from qgis.PyQt.QtCore import Qt", "from . import resources_rc\nfrom qgis.PyQt.QtCore import Qt",
     "QT608"),
]


@pytest.mark.parametrize(("file", "old", "new", "code"), PLANTED, ids=[f"{p[3]}-{p[2][:30]}" for p in PLANTED])
def test_the_check_fails_on_a_planted_qt5_construct(tmp_path: Path, file: str, old: str, new: str,
                                                     code: str) -> None:
    copy = tmp_path / "rsrefseg2_qgis"
    shutil.copytree(PLUGIN, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / file
    source = target.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"the plant site {old!r} moved in {file}"
    target.write_text(source.replace(old, new), encoding="utf-8")
    planted_line = source[: source.index(old)].count("\n") + 1

    result = _run_check(copy)

    assert result.returncode == 1, result.stdout + result.stderr
    findings = result.stdout.splitlines()
    assert findings == [f for f in findings if f.startswith(f"{target}:{planted_line}:") and f" {code} " in f], \
        findings  # exactly the planted construct, nothing else
    assert findings, f"{code} not reported:\n{result.stdout}{result.stderr}"


def test_a_qrc_file_and_a_resource_path_fail_the_check(tmp_path: Path) -> None:
    (tmp_path / "resources.qrc").write_text("<RCC/>", encoding="utf-8")
    (tmp_path / "icon.py").write_text('ICON = ":/plugins/x/icon.svg"\n', encoding="utf-8")
    codes = [finding.code for finding in check_qt6.check_paths([tmp_path])]
    assert codes == ["QT608", "QT608"]


def test_the_enum_members_come_from_the_bindings_and_their_scoped_names_resolve() -> None:
    """Every unscoped member the check knows has the scoped spelling it suggests, with the same value."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMessageBox

    table = check_qt6.unscoped_members()
    assert table["Qt"]["AlignLeft"] == "Qt.AlignmentFlag"
    assert table["QMessageBox"]["Yes"] == "QMessageBox.StandardButton"
    modules = [importlib.import_module(name) for name in check_qt6.ENUM_MODULES if importlib.util.find_spec(name)]
    classes = {name: getattr(module, name) for module in reversed(modules) for name in dir(module)}
    checked = 0
    for class_name, members in table.items():
        for member, prefix in members.items():
            scoped = classes[prefix.split(".")[0]]
            for part in [*prefix.split(".")[1:], member]:
                scoped = getattr(scoped, part)
            assert scoped == getattr(classes[class_name], member), f"{class_name}.{member} is not {prefix}.{member}"
            checked += 1
    assert checked > 5000, checked  # Qt and QGIS together have tens of thousands; a short list means a lookup broke
    assert Qt.AlignmentFlag.AlignLeft == Qt.AlignLeft and QMessageBox.StandardButton.Yes == QMessageBox.Yes


def test_every_scoped_enum_name_in_the_plugin_resolves() -> None:
    """The other half of "scoped names only": each ``Class.Enum.Member`` the plugin spells exists in the bindings.

    PyQt5 accepts both spellings, so a misspelt scoped name in a branch the tests never reach would first fail on a
    user's QGIS; here every one is looked up through the module that uses it (its imports, its own subclasses).
    """
    resolved: list[str] = []
    unknown: list[str] = []
    for info in pkgutil.walk_packages(rsrefseg2_qgis.__path__, "rsrefseg2_qgis."):
        module = importlib.import_module(info.name)
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name)):
                continue
            owner = getattr(module, node.value.value.id, None)
            kind = getattr(owner, node.value.attr, None) if isinstance(owner, type) else None
            if not check_qt6.is_enum_type(kind):
                continue
            name = f"{info.name}:{node.lineno}: {node.value.value.id}.{node.value.attr}.{node.attr}"
            (resolved if hasattr(kind, node.attr) else unknown).append(name)
    assert not unknown, unknown
    assert len(resolved) >= 40, resolved  # the plugin spells 45 (December 2026); far fewer means the walk broke


def test_every_plugin_module_imports() -> None:
    names = [info.name for info in pkgutil.walk_packages(rsrefseg2_qgis.__path__, "rsrefseg2_qgis.")]
    assert {"rsrefseg2_qgis.dock", "rsrefseg2_qgis.processing.provider", "rsrefseg2_qgis.tasks.segment_task"} <= \
        set(names)
    for name in names:
        importlib.import_module(name)


def _show_and_close(widget: QWidget) -> None:
    widget.show()
    QApplication.processEvents()
    assert widget.isVisible() and widget.findChildren(QWidget), type(widget).__name__
    widget.close()
    widget.deleteLater()


def test_every_dialog_and_the_dock_build(qgis_iface) -> None:
    _show_and_close(SegmentDock(iface=qgis_iface, settings=PluginSettings()))
    _show_and_close(SettingsDialog(settings=PluginSettings(), default_python=sys.executable))
    _show_and_close(ProcessDialog(title="steps", steps=[Step("python", sys.executable, ("-c", "pass"))]))
