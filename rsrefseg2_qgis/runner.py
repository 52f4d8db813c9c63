"""``SegmentRunner``: turns the dock's requests into ``SegmentTask``s and runs them one after another.

Main thread only. ``submit`` plans the raster read (errors go to the message bar at once), then queues the
task; the next task starts when the previous one has published its result, so queries run in the order typed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .client import BackendClient
from .i18n import tr
from .notices import Notices
from .raster_source import RasterInputError, plan_raster
from .requests import SegmentRequest
from .tasks.segment_task import SegmentTask, TaskOutcome


class SegmentRunner(QObject):
    """Queue of queries on one worker.

    Args:
        client: returns the (current) worker client.
        project: the project layers are read from and results go into.
        message_bar: ``iface.messageBar()`` or None.
        max_pixels: returns the current window size limit.
    """

    busy_changed = pyqtSignal(bool)
    progress_changed = pyqtSignal(int)
    status_changed = pyqtSignal(str)
    outcome_ready = pyqtSignal(object)  # TaskOutcome

    def __init__(self, *, client: Callable[[], BackendClient], project: QgsProject, message_bar=None,
                 max_pixels: Callable[[], int]) -> None:
        super().__init__()
        self._client = client
        self._project = project
        self.notices = Notices(message_bar)
        self._max_pixels = max_pixels
        self._queue: deque[SegmentTask] = deque()
        self._active: SegmentTask | None = None

    @property
    def busy(self) -> bool:
        """True while a query runs or waits."""
        return self._active is not None or bool(self._queue)

    def submit(self, request: SegmentRequest) -> SegmentTask | None:
        """Queue ``request``. Returns its task, or None when the raster cannot be read (the user is told why)."""
        layer = self._project.mapLayer(request.layer_id)
        try:
            if not isinstance(layer, QgsRasterLayer):
                raise RasterInputError(tr("The raster layer is no longer in the project."),
                                       tr("Choose a raster layer."))
            extent = None if request.extent is None else QgsRectangle(*request.extent)
            plan = plan_raster(layer, extent, request.resolution, self._max_pixels())
        except RasterInputError as exc:
            self._tell(TaskOutcome("failed", str(exc)))
            return None
        task = SegmentTask(request=request, plan=plan, client=self._client(), project=self._project,
                           notices=self.notices, on_done=self._on_done)
        task.status_changed.connect(self.status_changed)
        task.progressChanged.connect(lambda value: self.progress_changed.emit(int(value)))
        self._queue.append(task)
        self.status_changed.emit(tr("Queued: {phrase}").format(phrase=request.phrases[0]))
        self.busy_changed.emit(True)
        self._start_next()
        return task

    def cancel_all(self) -> None:
        """Cancel the running query and drop the queued ones."""
        while self._queue:
            self._queue.popleft().discard()
        if self._active is not None:
            self._active.cancel()

    def _start_next(self) -> None:
        if self._active is not None or not self._queue:
            return
        self._active = self._queue.popleft()
        QgsApplication.taskManager().addTask(self._active)

    def _on_done(self, outcome: TaskOutcome) -> None:
        self._active = None
        self.outcome_ready.emit(outcome)
        self.status_changed.emit(outcome.text)
        self._start_next()
        if not self.busy:
            self.busy_changed.emit(False)

    def _tell(self, outcome: TaskOutcome) -> None:
        self.notices.show(outcome.text, Qgis.MessageLevel.Warning)
        self.status_changed.emit(outcome.text)
        self.outcome_ready.emit(outcome)
