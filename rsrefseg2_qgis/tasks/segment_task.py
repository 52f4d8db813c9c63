"""``SegmentTask``: one query as a QgsTask. ``run()`` talks to the worker; ``finished()`` publishes the layer.

``run()`` executes on a QgsTaskManager thread and touches no project object: it reads pixels through the
provider clone the plan owns and waits on the client (progress and cancel are checked in that one loop).
``finished()`` runs on the main thread: it copies the worker's GeoJSON into a styled memory layer (or saves it
into the user's GeoPackage), adds it to the project, writes one message-bar line, and always deletes the
query's temp folder, so a cancelled or failed query leaves no layer and no file behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import Qgis, QgsProject, QgsRasterBlockFeedback, QgsRasterLayer, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import pyqtSignal

from ..client import BackendClient, WorkerError, sentence
from ..i18n import tr, tr_count
from ..notices import Notices
from ..query import QueryResult, RefineSource, run_query
from ..raster_source import RasterInputError, RasterPlan
from ..requests import SegmentRequest
from ..result_layer import ResultLayerError, layer_name, memory_copy, save_to_geopackage
from ..result_style import next_colour, style_probability, style_result

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskOutcome:
    """How a query ended: ``status`` ("done", "failed", "cancelled"), the text shown, the layer added (or None),
    ``source``: what refining the answer with clicks repeats (None when it cannot be refined), and the
    worker's ``warnings`` about the answer (also in ``text``, each its own sentence)."""

    status: str
    text: str
    layer: QgsVectorLayer | None = None
    source: RefineSource | None = None
    warnings: tuple[str, ...] = ()


class SegmentTask(QgsTask):
    """One referring-segmentation query in the background.

    Args:
        request: the query.
        plan: the pixels to read (made on the main thread by ``raster_source.plan_raster``).
        client: the worker client (shared; it queues concurrent requests).
        project: the project the result layer goes into.
        notices: where the one-line summary goes (the message bar), or None.
        on_done: called on the main thread with the ``TaskOutcome`` once everything is published.
    """

    status_changed = pyqtSignal(str)

    def __init__(self, *, request: SegmentRequest, plan: RasterPlan, client: BackendClient, project: QgsProject,
                 notices: Notices | None = None, on_done: Callable[[TaskOutcome], None] | None = None) -> None:
        super().__init__(tr("Referring segmentation: {name}").format(name=layer_name(request.phrases)),
                         QgsTask.Flag.CanCancel)
        self.request = request
        self.plan = plan
        self.client = client
        self.project = project
        self.notices = notices
        self.on_done = on_done
        self.work_dir = Path(tempfile.mkdtemp(prefix="rsrefseg2-"))
        self.outcome: TaskOutcome | None = None
        self._reply: QueryResult | None = None
        self._error: Exception | None = None
        self._seconds = 0.0
        self._feedback = QgsRasterBlockFeedback()
        self._project_closed = False
        project.cleared.connect(self._on_project_cleared)

    def _on_project_cleared(self) -> None:
        self._project_closed = True

    def cancel(self) -> None:
        """Cancel the query (the provider read and the worker request both stop)."""
        self._feedback.cancel()
        super().cancel()

    def run(self) -> bool:
        """Worker thread: read pixels, load the model, segment. Returns True on success."""
        start = time.monotonic()

        def progress(fraction: float, text: str) -> None:
            self.setProgress(100.0 * fraction)
            self.status_changed.emit(text)

        try:
            self._reply = run_query(client=self.client, request=self.request, plan=self.plan,
                                    work_dir=self.work_dir, on_progress=progress, is_cancelled=self.isCanceled,
                                    feedback=self._feedback)
        except (WorkerError, RasterInputError) as exc:
            self._error = exc
            return False
        except Exception as exc:  # a bug must reach the user as a message, never kill the task manager
            LOG.exception("referring segmentation failed")
            self._error = exc
            return False
        finally:
            self._seconds = time.monotonic() - start
        return True

    def finished(self, result: bool) -> None:
        """Main thread: publish the layer or the error, then delete the query's temp files."""
        try:
            self.outcome = self._publish() if result else self._failure()
        except (ResultLayerError, OSError) as exc:
            self.outcome = TaskOutcome("failed", str(exc))
        finally:
            self.discard()
        self._show(self.outcome)
        if self.on_done is not None:
            self.on_done(self.outcome)

    def discard(self) -> None:
        """Delete the query's temp folder and stop watching the project (also for a task that never ran)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with contextlib.suppress(TypeError):  # already disconnected
            self.project.cleared.disconnect(self._on_project_cleared)

    def _publish(self) -> TaskOutcome:
        if self._project_closed:
            return TaskOutcome("cancelled", tr("The project was closed while the query ran; result discarded."))
        reply = self._reply
        name = layer_name(self.request.phrases)
        layer = memory_copy(reply.result.outputs.geojson, name=name, crs_wkt=reply.result.crs)
        if self.request.output_gpkg:
            layer = save_to_geopackage(layer, self.request.output_gpkg, self.project)
        colour = next_colour(self.project)
        style_result(layer, colour)
        probability = reply.result.outputs.probability
        if probability:  # added first, so that it lies under the polygons
            raster = QgsRasterLayer(self._keep_probability(probability, name), f"{name} (probability)", "gdal")
            style_probability(raster, colour)
            self.project.addMapLayer(raster)
        self.project.addMapLayer(layer)
        untrained = tr(" (untrained model: shapes are random)") if self.request.untrained else ""
        text = tr("{objects} for '{phrase}' in {seconds:.1f} s{untrained}.").format(
            objects=tr_count(reply.count, "{count} object", "{count} objects"), phrase=self.request.phrases[0],
            seconds=self._seconds, untrained=untrained)
        warnings = tuple(reply.result.warnings)
        for warning in warnings:  # before the note: the dock's status shows the first lines
            text += " " + sentence(tr("Warning: {warning}").format(warning=warning))
        note = self.request.resolution_note or reply.result.resolution_note
        if note:  # its own sentence: the message bar shows the text on one line
            text += " " + sentence(tr("Read at {note}").format(note=note))
        return TaskOutcome("done", text, layer, reply.source, warnings)

    def _keep_probability(self, path: str, name: str) -> str:
        """Move the worker's probability GeoTIFF out of the query's temp folder (deleted after publishing):
        beside the user's GeoPackage under a free name, or into a temp folder of its own. Returns the new path."""
        if self.request.output_gpkg:
            folder, stem = Path(self.request.output_gpkg).parent, Path(self.request.output_gpkg).stem
        else:
            folder, stem = Path(tempfile.mkdtemp(prefix="rsrefseg2-probability-")), "probability"
        table = "".join(c if c.isalnum() else "_" for c in name.removeprefix("rsrefseg: "))[:40]
        target, number = folder / f"{stem}_{table}_probability.tif", 1
        while target.exists():  # never over a file already there
            number += 1
            target = folder / f"{stem}_{table}_probability_{number}.tif"
        shutil.move(path, target)
        return str(target)

    def _failure(self) -> TaskOutcome:
        error = self._error
        if self.isCanceled() or (isinstance(error, WorkerError) and error.code == "cancelled"):
            return TaskOutcome("cancelled", tr("Query cancelled: '{phrase}'.").format(phrase=self.request.phrases[0]))
        if error is None:
            return TaskOutcome("failed", tr("The query stopped without a result."))
        return TaskOutcome("failed", str(error))

    def _show(self, outcome: TaskOutcome) -> None:
        if self.notices is None:
            return
        level = {"done": Qgis.MessageLevel.Warning if outcome.warnings else Qgis.MessageLevel.Success,
                 "cancelled": Qgis.MessageLevel.Info}.get(outcome.status, Qgis.MessageLevel.Critical)
        self.notices.show(outcome.text, level)
