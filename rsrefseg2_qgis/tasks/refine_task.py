"""``RefineTask``: one ``refine`` request (the user's clicks on an answer) in the background.

The worker decodes the clicks on the view it cached when it segmented the phrase; the task reads its answer back
into features on the main thread and hands them to ``on_done`` (the map tool puts them into the result layer).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsFeature, QgsTask

from ..client import BackendClient, WorkerError
from ..i18n import tr, tr_count
from ..query import RefineSource
from ..result_layer import ResultLayerError, memory_copy

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineOutcome:
    """How a refinement ended: ``features`` (the new answer, in the raster's CRS) or None with ``text`` saying
    why; ``not_cached`` when the worker no longer holds the view (the phrase must run again)."""

    features: list[QgsFeature] | None
    text: str = ""
    not_cached: bool = False


class RefineTask(QgsTask):
    """Send the click list ``clicks`` (and ``box``) for the answer ``source`` describes.

    Args:
        source: the segment request to repeat, from the query's ``TaskOutcome``.
        clicks: every click so far, in order (``protocol.Click`` in the raster's CRS).
        box: (xmin, ymin, xmax, ymax) in the raster's CRS, or None.
        client: the worker client that segmented the view.
        on_done: called on the main thread with the ``RefineOutcome``.
    """

    def __init__(self, *, source: RefineSource, clicks: tuple, box: tuple[float, float, float, float] | None,
                 client: BackendClient, on_done: Callable[[RefineOutcome], None]) -> None:
        title = tr("Refining the answer with {clicks}").format(
            clicks=tr_count(len(clicks), "{count} click", "{count} clicks"))
        super().__init__(title, QgsTask.Flag.CanCancel)
        self.source = source
        self.clicks = clicks
        self.box = box
        self.client = client
        self.on_done = on_done
        self.work_dir = Path(tempfile.mkdtemp(prefix="rsrefseg2-refine-"))
        self._reply = None
        self._error: Exception | None = None

    def run(self) -> bool:
        """Worker thread: the ``refine`` request. Returns True on success."""
        if not Path(self.source.fields["raster"]).is_file():  # the temp GeoTIFF of a layer read through its provider
            self._error = WorkerError("not_cached", tr("The view's temporary copy is gone."))
            return False
        try:
            self._reply = self.client.refine(output_dir=str(self.work_dir), clicks=self.clicks, box=self.box,
                                             is_cancelled=self.isCanceled, **self.source.fields)
        except WorkerError as exc:
            self._error = exc
            return False
        except Exception as exc:  # a bug must reach the user as a message, never kill the task manager
            LOG.exception("refinement failed")
            self._error = exc
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: read the answer's features (or say why there are none), then delete the temp files."""
        try:
            outcome = self._read() if result else self._failure()
        except ResultLayerError as exc:
            outcome = RefineOutcome(None, str(exc))
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.on_done(outcome)

    def _read(self) -> RefineOutcome:
        layer = memory_copy(self._reply.outputs.geojson, name="refined", crs_wkt=self._reply.crs)
        return RefineOutcome(list(layer.getFeatures()))

    def _failure(self) -> RefineOutcome:
        error = self._error
        if isinstance(error, WorkerError) and error.code == "not_cached":
            return RefineOutcome(None, tr("The worker no longer holds this view (its temporary copy is gone or the "
                                          "model was reloaded): run the phrase again to refine."), not_cached=True)
        if self.isCanceled() or error is None:
            return RefineOutcome(None, tr("Refinement cancelled."))
        return RefineOutcome(None, str(error))
