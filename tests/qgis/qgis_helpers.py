"""Helpers for the QGIS tests: the project's worker interpreter, request builders, waiting on Qt signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.PyQt.QtCore import QEventLoop, QTimer

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.requests import SegmentRequest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = paths.venv_python(ROOT / ".venv")


def tiny_request(layer_id: str, phrase: str = "the large white storage tank", **changes) -> SegmentRequest:
    """A request on the tiny random-init model: CPU, 256 px tiles."""
    fields = {"layer_id": layer_id, "phrases": (phrase,), "config": "tiny", "checkpoint": None,
              "device": "cpu", "tile_size": 256, "overlap": 32, "search": "view"}
    fields.update(changes)
    return SegmentRequest(**fields)


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Run the Qt event loop until ``condition()`` is true or ``seconds`` pass; returns ``condition()``."""
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() else None)
    timer.start(50)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if not condition():
        loop.exec()
    timer.stop()
    return condition()
