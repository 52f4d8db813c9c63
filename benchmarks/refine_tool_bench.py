"""The dock's Refine map tool end to end: click on the canvas → answer in the result layer, and Undo.

Run: ``QT_QPA_PLATFORM=offscreen python benchmarks/refine_tool_bench.py [--clicks 10]``.

Real QGIS (offscreen), the sample GeoTIFF on a map canvas, the bundled demo model through the real worker process
(``python -m backend.worker`` in this checkout's ``.venv``). The phrase "the red building at the top left" is
answered once (``SegmentTask``), then ``--clicks`` clicks go through ``RefineMapTool`` as ``QgsMapMouseEvent``s,
alternating an exclude and an include click at the first answer's interior point (each edit is a new click list:
one decode on the cached view). Timed per click: release event → the new answer in the layer (background task,
worker decode, GeoJSON read back, features replaced on the main thread); and one Undo (no request). Writes
``benchmarks/results/refine_tool.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "refine_tool.json"
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
PHRASE = "the red building at the top left"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10, help="clicks through the tool (default 10)")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from qgis.core import QgsApplication, QgsGeometry, QgsProject, QgsRasterLayer
    from qgis.gui import QgsMapCanvas, QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QEventLoop, QPoint, Qt, QTimer

    app = QgsApplication([], False)
    app.initQgis()
    from rsrefseg2_qgis import paths
    from rsrefseg2_qgis.client import BackendClient
    from rsrefseg2_qgis.raster_source import plan_raster
    from rsrefseg2_qgis.refine_tool import RefineMapTool
    from rsrefseg2_qgis.requests import SegmentRequest
    from rsrefseg2_qgis.tasks.segment_task import SegmentTask

    def wait_for(condition, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("error: the refinement did not end in time")
            loop = QEventLoop()
            QTimer.singleShot(5, loop.quit)
            loop.exec()

    client = BackendClient(python=paths.venv_python(ROOT / ".venv"), backend_root=paths.backend_root())
    try:
        layer = QgsRasterLayer(str(SAMPLE), "sample", "gdal")
        QgsProject.instance().addMapLayer(layer)
        request = SegmentRequest(layer_id=layer.id(), phrases=(PHRASE,), checkpoint=str(paths.demo_checkpoint()),
                                 config=None, device="cpu")
        task = SegmentTask(request=request, plan=plan_raster(layer, None, request.resolution, 10**7),
                           client=client, project=QgsProject.instance())
        start = time.monotonic()
        task.finished(task.run())
        segment_s = time.monotonic() - start
        result = task.outcome.layer
        if result is None or not result.featureCount():
            raise SystemExit(f"error: the phrase found nothing: {task.outcome.text}")

        canvas = QgsMapCanvas()
        canvas.resize(800, 800)
        canvas.setDestinationCrs(layer.crs())
        canvas.setExtent(layer.extent())
        tool = RefineMapTool(canvas, layer=result, source=task.outcome.source, client=client)
        canvas.setMapTool(tool)
        point = QgsGeometry.unaryUnion([f.geometry() for f in result.getFeatures()]).pointOnSurface().asPoint()
        pixel = canvas.getCoordinateTransform().transform(point)
        position = QPoint(round(pixel.x()), round(pixel.y()))

        click_s = []
        for index in range(args.clicks):
            button = Qt.MouseButton.RightButton if index % 2 == 0 else Qt.MouseButton.LeftButton
            tool.canvasPressEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonPress, position, button, button))
            start = time.monotonic()
            tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, position, button,
                                                     Qt.MouseButton.NoButton))
            wait_for(lambda: tool.task is None)
            click_s.append(time.monotonic() - start)
        if len(tool.edits) != args.clicks:
            raise SystemExit(f"error: {len(tool.edits)} of {args.clicks} clicks applied")
        start = time.monotonic()
        tool.undo()
        undo_s = time.monotonic() - start
    finally:
        client.shutdown()

    rows = {"segment_s": segment_s, "click_median_s": statistics.median(click_s), "click_max_s": max(click_s),
            "undo_s": undo_s}
    record = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "command": " ".join(sys.argv), "clicks": args.clicks, **rows,
              "click_s": click_s}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2), encoding="utf-8")
    temporary.replace(RESULTS)
    print("| step | seconds |\n|---|---|")
    print(f"| phrase on the sample (load + encode + decode) | {segment_s:.2f} |")
    print(f"| one click through the tool, median of {args.clicks} | {rows['click_median_s']:.3f} |")
    print(f"| one click, max | {rows['click_max_s']:.3f} |")
    print(f"| Undo (no request) | {undo_s:.4f} |")
    QgsProject.instance().removeAllMapLayers()
    app.exitQgis()


if __name__ == "__main__":
    main()
