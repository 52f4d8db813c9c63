"""Helpers for the QGIS tests: the project's worker interpreter, request builders, waiting on Qt signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from osgeo import gdal
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


HALF_WORLD = 20037508.342789244  # EPSG:3857


def write_xyz_tiles(source: Path, folder: Path, zoom: int) -> tuple[float, float, float, float]:
    """Cut ``source`` into 256 px PNG web-map tiles (the XYZ scheme) with GDAL; returns its 3857 bounds."""
    warped = gdal.Warp("/vsimem/rsrefseg2_3857.tif", str(source), dstSRS="EPSG:3857")
    x0, step_x, _, y1, _, step_y = warped.GetGeoTransform()
    x1, y0 = x0 + step_x * warped.RasterXSize, y1 + step_y * warped.RasterYSize
    tile = 2 * HALF_WORLD / 2**zoom
    for tx in range(int((x0 + HALF_WORLD) // tile), int((x1 + HALF_WORLD) // tile) + 1):
        for ty in range(int((HALF_WORLD - y1) // tile), int((HALF_WORLD - y0) // tile) + 1):
            bounds = (-HALF_WORLD + tx * tile, HALF_WORLD - (ty + 1) * tile, -HALF_WORLD + (tx + 1) * tile,
                      HALF_WORLD - ty * tile)
            cut = gdal.Warp("/vsimem/rsrefseg2_tile.tif", warped, outputBounds=bounds, width=256, height=256,
                            dstAlpha=True)
            (folder / str(zoom) / str(tx)).mkdir(parents=True, exist_ok=True)
            gdal.Translate(str(folder / str(zoom) / str(tx) / f"{ty}.png"), cut, format="PNG")
    for name in ("/vsimem/rsrefseg2_3857.tif", "/vsimem/rsrefseg2_tile.tif"):
        gdal.Unlink(name)
    return x0, y0, x1, y1
