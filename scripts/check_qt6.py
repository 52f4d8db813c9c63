"""Static check that the plugin's Python runs on both Qt 5 (QGIS 3.x) and Qt 6 (QGIS 4) through ``qgis.PyQt``.

``python scripts/check_qt6.py [PATH ...]`` (default: ``rsrefseg2_qgis/``) prints one ``path:line:col: CODE message``
per finding and exits 1 if there is any. It needs the QGIS Python bindings (it runs where the plugin's tests run).

Rules (what PyQt6 / QGIS 4 removed, and what QGIS 3.22 lacks):

- ``QT601`` ``exec_()``: gone in PyQt6; ``exec()`` works on both.
- ``QT602`` an unscoped enum member (``Qt.AlignLeft``): PyQt6 knows only the scoped name
  (``Qt.AlignmentFlag.AlignLeft``), which PyQt5 accepts too. The members are not a hand list: they are read from
  the enum types of every class that ``qgis.PyQt``, ``qgis.core`` and ``qgis.gui`` export here, so a new enum in an
  update is covered. Classes of the checked code that derive from those (``class Dialog(QDialog)``) inherit them.
- ``QT603`` ``QVariant.String`` and the rest of ``QVariant.Type``: gone in PyQt6; field types are ``QMetaType.Type``
  from QGIS 3.38. Allowed only in the branch of an ``if Qgis.QGIS_VERSION_INT >= N`` test that runs on QGIS
  older than ``N`` (``N`` ≤ 40000), i.e. the 3.22 fallback that QGIS 4 never reaches.
- ``QT604`` ``QRegExp``: removed in Qt 6 (``QRegularExpression`` exists in both).
- ``QT605`` ``QDesktopWidget`` / ``QApplication.desktop()``: removed in Qt 6 (use ``QScreen``).
- ``QT606`` importing ``PyQt5``/``PyQt6`` directly or ``qgis.PyQt.Qt`` (no such module on Qt 6): go through
  ``qgis.PyQt.QtCore``/``QtGui``/``QtWidgets``.
- ``QT607`` ``QAction``/``QActionGroup``/``QShortcut`` imported from ``qgis.PyQt.QtGui``: QGIS 3.22 has them only in
  ``qgis.PyQt.QtWidgets``, which keeps them on Qt 6 as well (QGIS re-exports them there).
- ``QT608`` compiled resources: an import of a ``resources``/``resources_rc`` module, a ``:/`` resource path or a
  ``.qrc`` file (``pyrcc5`` does not exist for Qt 6; load files by path).

Why a check of our own (evaluated December 2026):

- ``flake8-qgis`` 2.1.0 (PyPI, MIT, well kept; its ``QGS4xx`` rules are Qt 6 rules) reports ``exec_``, ``QVariant.X``,
  ``QRegExp``, ``QDesktopWidget``, compiled resources and a few removed methods, but its enum rule (``QGS403``) is a
  hand list of about a hundred renamed members: on a planted file it missed ``Qt.AlignLeft``,
  ``QDialogButtonBox.Cancel``, ``QMessageBox.Yes``, ``QgsWkbTypes.PolygonGeometry`` and ``QAction`` from ``QtGui``
  (which QGIS 3.22 lacks), and it flags the ``QVariant`` field types of the 3.22 fallback branch too. It would also
  bring flake8 next to ruff. Run once over the plugin (``flake8 --select=QGS4``), it found nothing beyond that
  fallback.
- The QGIS project's ``scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py`` is a converter, not a check: it rewrites files in
  place, is not on PyPI (a file of the QGIS repository, GPL) and learns the enums by importing PyQt6 and the Qt 6
  build of QGIS, neither of which exists on a QGIS 3.22 machine. ``PyQtEnumConverter`` is a text-replacement
  script; ``qgis-plugin-ci`` packages and releases plugins and checks no code.
- So this AST check reads the enum members from the bindings that are installed (every Qt and QGIS enum, with no
  list to keep), knows the ``QGIS_VERSION_INT`` fallback and the 3.22 location of ``QAction``, and needs nothing
  beyond what the plugin's tests already need.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = (ROOT / "rsrefseg2_qgis",)
# Modules whose classes carry the enums the check knows (through qgis.PyQt, so it is whatever Qt QGIS uses).
ENUM_MODULES = ("qgis.PyQt.QtCore", "qgis.PyQt.QtGui", "qgis.PyQt.QtWidgets", "qgis.PyQt.QtNetwork",
                "qgis.PyQt.QtXml", "qgis.PyQt.QtSvg", "qgis.PyQt.QtPrintSupport", "qgis.core", "qgis.gui")
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut"}
REMOVED_CLASSES = {"QRegExp": "QT604", "QRegExpValidator": "QT604", "QDesktopWidget": "QT605"}
OLDEST_QGIS_4 = 40000


@dataclass(frozen=True)
class Finding:
    """One construct that breaks on Qt 6 (or on QGIS 3.22)."""

    path: Path
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


def is_enum_type(kind: object) -> bool:
    """Whether ``kind`` is an enum type of the bindings: a sip enum (PyQt5) or a Python enum (PyQt6; QGIS ≥ 3.30)."""
    from qgis.PyQt.QtCore import Qt

    sip_enum_type = type(type(Qt.AlignmentFlag.AlignLeft))  # the metatype of every PyQt5/sip enum
    return type(kind) is sip_enum_type or (isinstance(kind, type) and issubclass(kind, enum.Enum))


@lru_cache(maxsize=1)
def unscoped_members() -> dict[str, dict[str, str]]:
    """For each Qt/QGIS class name, its enum members reachable unscoped, mapped to the scoped spelling's prefix.

    Returns:
        ``{"Qt": {"AlignLeft": "Qt.AlignmentFlag", ...}, "QLabel": {"StyledPanel": "QLabel.Shape", ...}, ...}``,
        read from the installed bindings: sip enum types, and the Python enums of newer QGIS, whose members QGIS
        also sets on the class under their old names (``QgsWkbTypes.PolygonGeometry``). Where the class does not
        carry the enum type itself (a member re-exported from elsewhere), the prefix is the enum's qualified name.
    """
    table: dict[str, dict[str, str]] = {}
    for module_name in ENUM_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a Qt module this QGIS build lacks
            continue
        for class_name in dir(module):
            cls = getattr(module, class_name)
            if not isinstance(cls, type) or cls.__qualname__ != class_name or class_name in table:
                continue  # not a class, a nested class some binding also exports at the top, or seen already
            members = {}
            for attr in dir(cls):
                value = getattr(cls, attr, None)
                kind = type(value)
                if is_enum_type(kind) and getattr(kind, attr, None) == value:  # a member (or alias), not a constant
                    carried = getattr(cls, kind.__name__, None) is kind
                    members[attr] = f"{class_name}.{kind.__name__}" if carried else kind.__qualname__
            if members:
                table[class_name] = members
    return table


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _old_qgis_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes that run only on QGIS 3 (the old branch of a ``QGIS_VERSION_INT`` comparison)."""
    old: set[int] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1):
            continue
        left, op, right = node.test.left, node.test.ops[0], node.test.comparators[0]
        if not ((_dotted(left) or "").endswith("QGIS_VERSION_INT") and isinstance(right, ast.Constant)
                and isinstance(right.value, int) and right.value <= OLDEST_QGIS_4):
            continue
        if isinstance(op, ast.GtE | ast.Gt):
            branch = node.orelse
        elif isinstance(op, ast.Lt | ast.LtE):
            branch = node.body
        else:
            continue
        old.update(id(inner) for statement in branch for inner in ast.walk(statement))
    return old


def _local_classes(trees: Iterable[ast.AST], known: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The checked code's classes that derive from known Qt/QGIS classes, with the members they inherit."""
    bases: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [(_dotted(base) or "").rsplit(".", 1)[-1] for base in node.bases]
    table = dict(known)
    changed = True
    while changed:  # a class may derive from another local class
        changed = False
        for name, names in bases.items():
            members: dict[str, str] = {}
            for base in names:
                members.update(table.get(base, {}))
            if members and table.get(name) != members and name not in known:
                table[name] = members
                changed = True
    return table


def _import_findings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    for module in modules:
        if module.split(".")[0] in {"PyQt5", "PyQt6"} or module == "qgis.PyQt.Qt":
            yield "QT606", f"import '{module}': use qgis.PyQt.QtCore/QtGui/QtWidgets (Qt 5 and Qt 6)"
        if module.rsplit(".", 1)[-1] in {"resources", "resources_rc"}:
            yield "QT608", f"import '{module}': compiled Qt resources (pyrcc) do not exist on Qt 6; load by path"
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name in {"resources", "resources_rc"}:
                yield "QT608", f"import '{alias.name}': compiled Qt resources (pyrcc) do not exist on Qt 6"
            if node.module == "qgis.PyQt.QtGui" and alias.name in MOVED_TO_QTGUI:
                yield "QT607", (f"{alias.name} from qgis.PyQt.QtGui is missing on QGIS 3.22: import it from "
                                "qgis.PyQt.QtWidgets (QGIS keeps it there on Qt 6)")
            if alias.name in REMOVED_CLASSES:
                yield REMOVED_CLASSES[alias.name], f"{alias.name} was removed in Qt 6"


def _node_findings(node: ast.AST, classes: dict[str, dict[str, str]], old_qgis: set[int],
                   variant_types: set[str]) -> Iterator[tuple[str, str]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield from _import_findings(node)
    elif isinstance(node, ast.Attribute):
        if node.attr == "exec_":
            yield "QT601", "exec_() is gone in PyQt6: call exec()"
        elif node.attr == "desktop" and (_dotted(node.value) or "").endswith("QApplication"):
            yield "QT605", "QApplication.desktop() was removed in Qt 6: use QScreen (QApplication.screens())"
        if isinstance(node.value, ast.Name):
            owner = node.value.id
            if owner == "QVariant" and node.attr in variant_types:
                if id(node) not in old_qgis:
                    yield "QT603", (f"QVariant.{node.attr} is gone in PyQt6: use QMetaType.Type (QGIS ≥ 3.38) with "
                                    "the QVariant fallback only under `if Qgis.QGIS_VERSION_INT >= 33800: … else:`")
            elif node.attr in classes.get(owner, {}):
                scoped = f"{classes[owner][node.attr]}.{node.attr}"
                yield "QT602", f"unscoped enum {owner}.{node.attr}: PyQt6 knows only {scoped}"
    elif isinstance(node, ast.Name) and node.id in REMOVED_CLASSES:
        yield REMOVED_CLASSES[node.id], f"{node.id} was removed in Qt 6"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(":/"):
        yield "QT608", f"resource path {node.value!r} needs compiled Qt resources (pyrcc): load the file by path"


def check_sources(sources: dict[Path, str]) -> list[Finding]:
    """Findings in the given Python sources.

    Args:
        sources: path (for the report) → source text.
    """
    from qgis.PyQt.QtCore import QVariant

    trees = {path: ast.parse(text, filename=str(path)) for path, text in sources.items()}
    classes = _local_classes(trees.values(), unscoped_members())
    variant_types = {"Type", *(name for name in dir(QVariant.Type) if not name.startswith("_"))}
    variant_types.update(name for name, prefix in classes.get("QVariant", {}).items() if prefix == "QVariant.Type")
    findings = []
    for path, tree in trees.items():
        old_qgis = _old_qgis_nodes(tree)
        for node in ast.walk(tree):
            for code, message in _node_findings(node, classes, old_qgis, variant_types):
                findings.append(Finding(path, getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1,
                                        code, message))
    return sorted(findings, key=lambda f: (str(f.path), f.line, f.col, f.code))


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*")) if path.is_dir() else [path])
    return files


def check_paths(paths: Iterable[Path]) -> list[Finding]:
    """Findings in every ``.py`` file under the paths, plus any ``.qrc`` file there (``QT608``)."""
    files = _files(paths)
    sources = {file: file.read_text(encoding="utf-8") for file in files if file.suffix == ".py"}
    findings = check_sources(sources)
    findings += [Finding(file, 1, 1, "QT608", "a .qrc file: pyrcc does not exist for Qt 6; ship the files and "
                         "load them by path") for file in files if file.suffix == ".qrc"]
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, default=list(DEFAULT_PATHS),
                        help="files or folders to check (default: rsrefseg2_qgis/)")
    args = parser.parse_args(argv)
    missing = [path for path in args.paths if not path.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    findings = check_paths(args.paths)
    for finding in findings:
        print(finding)
    if findings:
        print(f"error: {len(findings)} Qt 6 incompatibilities\nhint: see the rules in scripts/check_qt6.py's "
              "docstring; the QGIS migration guide: https://plugins.qgis.org/docs/migrate-qgis4", file=sys.stderr)
        return 1
    print(f"Qt 6 check: {sum(file.suffix == '.py' for file in _files(args.paths))} files clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
