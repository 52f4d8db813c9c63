"""One translation entry point for every user-visible string of the plugin."""

from __future__ import annotations

from qgis.PyQt.QtCore import QCoreApplication

CONTEXT = "RSRefSeg2"


def tr(text: str) -> str:
    """Translate ``text`` in the plugin's context (returns it unchanged when no translation is installed)."""
    return QCoreApplication.translate(CONTEXT, text)


def tr_count(count: int, one: str, many: str) -> str:
    """``one`` or ``many`` translated by ``count`` and formatted with it ("1 object", "3 objects")."""
    return tr(one if count == 1 else many).format(count=count)
