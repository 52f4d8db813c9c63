"""``RefineMapTool``: correct a phrase's answer with clicks on the map, in place in its result layer.

Left click adds an include point, right click or Shift+click an exclude point, a drag draws the box the object
lies in (a new drag replaces it). Each edit sends the whole click list as a ``refine`` request (``RefineTask``,
off the main thread) and the answer replaces the result layer's features; the attribute ``clicks`` counts the
edits. Ctrl+Z (or ``undo``) drops the last edit and puts the previous answer back without asking the worker; Esc
leaves the tool. Points are drawn green (include) / red (exclude), the box as a rubber band, and all vanish when
the tool is left; the edits are kept, so activating the tool again goes on from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import QPoint, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

from .client import BackendClient
from .i18n import tr, tr_count
from .notices import Notices
from .query import RefineSource
from .result_layer import ResultLayerError, replace_features
from .tasks.refine_task import RefineOutcome, RefineTask

INCLUDE_COLOUR, EXCLUDE_COLOUR, BOX_COLOUR = QColor(0, 170, 0), QColor(220, 0, 0), QColor(255, 170, 0)
DRAG_PIXELS = 6  # a press and release further apart than this (screen pixels) is a box, not a click

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Edit:
    """The click list after one edit: ``clicks`` (``protocol.Click`` in the raster's CRS) and ``box``."""

    clicks: tuple
    box: Box | None


class RefineMapTool(QgsMapTool):
    """The Refine map tool on one answer.

    Args:
        canvas: the map canvas.
        layer: the answer's result layer (edited in place).
        source: how the answer was asked for (``TaskOutcome.source``).
        client: the worker client that segmented the view.
        notices: the message bar, or None.

    Signals:
        edits_changed(int): the number of edits now applied (after a refinement or an undo).
        message(str): a line for the dock's status.
        busy_changed(bool): a refinement started / ended.
    """

    edits_changed = pyqtSignal(int)
    message = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)

    def __init__(self, canvas: QgsMapCanvas, *, layer: QgsVectorLayer, source: RefineSource,
                 client: BackendClient, notices: Notices | None = None) -> None:
        super().__init__(canvas)
        self.layer = layer
        self.layer_id = layer.id()
        self.source = source
        self.client = client
        self.notices = notices
        self.raster_crs = QgsCoordinateReferenceSystem.fromWkt(source.crs_wkt)
        self.view = QgsRectangle(*source.view)
        self.edits: list[Edit] = []
        self.answers: list[list[QgsFeature]] = [_copies(layer)]  # answers[i]: the layer after i edits
        self.task: RefineTask | None = None
        self._press: QPoint | None = None
        self._markers: list[QgsVertexMarker] = []
        self._box_band: QgsRubberBand | None = None
        self._drag_band: QgsRubberBand | None = None
        self.setCursor(Qt.CursorShape.CrossCursor)

    # ------------------------------------------------------------------------------------------------ events
    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt's name)
        """Remember where a click or a drag starts."""
        self._press = event.pos()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt's name)
        """Show the box while the left button drags."""
        if self._press is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return
        if (event.pos() - self._press).manhattanLength() <= DRAG_PIXELS:
            return
        if self._drag_band is None:
            self._drag_band = self._band()
        start = self.toMapCoordinates(self._press)
        self._drag_band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(start, event.mapPoint())), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt's name)
        """A click adds a point (right or Shift = exclude); a drag sets the box."""
        press, self._press = self._press, None
        self._drop_drag_band()
        if press is None or event.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return
        if (event.pos() - press).manhattanLength() > DRAG_PIXELS and event.button() == Qt.MouseButton.LeftButton:
            self._add_box(QgsRectangle(self.toMapCoordinates(press), event.mapPoint()))
            return
        include = (event.button() == Qt.MouseButton.LeftButton
                   and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        self._add_click(event.mapPoint(), include)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        """Ctrl+Z undoes the last edit; Esc leaves the tool."""
        if event.key() == Qt.Key.Key_Escape:
            self.canvas().unsetMapTool(self)
            event.accept()
        elif event.key() == Qt.Key.Key_Z and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.undo()
            event.accept()
        else:
            event.ignore()

    def activate(self) -> None:
        """Draw the edits kept from an earlier activation."""
        super().activate()
        self._draw_edits()

    def deactivate(self) -> None:
        """Remove every marker and rubber band from the map."""
        self._clear_drawings()
        self._drop_drag_band()
        super().deactivate()

    # ------------------------------------------------------------------------------------------------ edits
    def undo(self) -> None:
        """Drop the last edit and put the answer before it back in the layer (no request: it is kept here)."""
        if not self._ready():
            return
        if not self.edits:
            self._tell(tr("Nothing to undo."), Qgis.MessageLevel.Info)
            return
        self.edits.pop()
        self.answers.pop()
        self._apply(self.answers[-1])

    def _add_click(self, canvas_point: QgsPointXY, include: bool) -> None:
        point = self._to_raster().transform(canvas_point)
        if not self.view.contains(point):
            self._tell(tr("That point lies outside the view the phrase was read on: click inside it (or run the "
                          "phrase on a larger extent)."), Qgis.MessageLevel.Warning)
            return
        last = self.edits[-1] if self.edits else Edit((), None)
        click = self.client.protocol.Click(point.x(), point.y(), include=include)
        self._send(Edit(last.clicks + (click,), last.box))

    def _add_box(self, canvas_rect: QgsRectangle) -> None:
        rect = self._to_raster().transformBoundingBox(canvas_rect).intersect(self.view)
        if rect.isEmpty():
            self._tell(tr("That box lies outside the view the phrase was read on: draw it inside."),
                       Qgis.MessageLevel.Warning)
            return
        last = self.edits[-1] if self.edits else Edit((), None)
        self._send(Edit(last.clicks, (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())))

    def _send(self, edit: Edit) -> None:
        if not self._ready():
            return
        self.task = RefineTask(source=self.source, clicks=edit.clicks, box=edit.box, client=self.client,
                               on_done=lambda outcome: self._on_done(edit, outcome))
        self.busy_changed.emit(True)
        self.message.emit(tr("Refining…"))
        QgsApplication.taskManager().addTask(self.task)

    def _on_done(self, edit: Edit, outcome: RefineOutcome) -> None:
        self.task = None
        self.busy_changed.emit(False)
        if outcome.features is None:
            self._tell(outcome.text, Qgis.MessageLevel.Warning if outcome.not_cached else Qgis.MessageLevel.Critical)
            return
        if not self._layer_kept():
            return
        self.edits.append(edit)
        self.answers.append(outcome.features)
        self._apply(outcome.features)

    def _apply(self, features: list[QgsFeature]) -> None:
        try:
            replace_features(self.layer, features, len(self.edits))
        except ResultLayerError as exc:
            self._tell(str(exc), Qgis.MessageLevel.Critical)
            return
        if self.isActive():
            self._draw_edits()
        self.edits_changed.emit(len(self.edits))
        self.message.emit(tr("{objects} after {clicks}").format(
            objects=tr_count(len(features), "{count} object", "{count} objects"),
            clicks=tr_count(len(self.edits), "{count} click", "{count} clicks")))

    def _ready(self) -> bool:
        """True unless a refinement is running (edits apply one at a time, each on the last answer)."""
        if self.task is not None:
            self._tell(tr("Wait for the last click's answer."), Qgis.MessageLevel.Info)
            return False
        return self._layer_kept()

    def _layer_kept(self) -> bool:
        """True while the answer's layer is in the project (else the user is told the edit is dropped)."""
        if QgsProject.instance().mapLayer(self.layer_id) is None:
            self._tell(tr("The answer's layer was removed from the project: run the phrase again to refine."),
                       Qgis.MessageLevel.Warning)
            return False
        return True

    # ------------------------------------------------------------------------------------------------ drawing
    def _to_raster(self) -> QgsCoordinateTransform:
        return QgsCoordinateTransform(self.canvas().mapSettings().destinationCrs(), self.raster_crs,
                                      QgsProject.instance())

    def _draw_edits(self) -> None:
        self._clear_drawings()
        if not self.edits:
            return
        to_canvas = self._to_raster()
        edit = self.edits[-1]
        for click in edit.clicks:
            marker = QgsVertexMarker(self.canvas())
            marker.setCenter(to_canvas.transform(QgsPointXY(click.x, click.y),
                                                 Qgis.TransformDirection.Reverse))
            marker.setColor(INCLUDE_COLOUR if click.include else EXCLUDE_COLOUR)
            marker.setIconType(QgsVertexMarker.IconType.ICON_CIRCLE if click.include
                               else QgsVertexMarker.IconType.ICON_X)
            marker.setIconSize(12)
            marker.setPenWidth(3)
            self._markers.append(marker)
        if edit.box is not None:
            rect = to_canvas.transformBoundingBox(QgsRectangle(*edit.box), Qgis.TransformDirection.Reverse)
            self._box_band = self._band()
            self._box_band.setToGeometry(QgsGeometry.fromRect(rect), None)

    def _band(self) -> QgsRubberBand:
        band = QgsRubberBand(self.canvas(), QgsWkbTypes.GeometryType.PolygonGeometry)
        band.setStrokeColor(BOX_COLOUR)
        band.setFillColor(QColor(0, 0, 0, 0))
        band.setWidth(2)
        return band

    def _clear_drawings(self) -> None:
        scene = self.canvas().scene()
        for item in self._markers + ([self._box_band] if self._box_band is not None else []):
            scene.removeItem(item)
        self._markers, self._box_band = [], None

    def _drop_drag_band(self) -> None:
        if self._drag_band is not None:
            self.canvas().scene().removeItem(self._drag_band)
            self._drag_band = None

    @property
    def drawn_items(self) -> int:
        """How many markers and rubber bands the tool shows on the canvas now."""
        return len(self._markers) + (self._box_band is not None) + (self._drag_band is not None)

    def _tell(self, text: str, level: Qgis.MessageLevel) -> None:
        self.message.emit(text)
        if self.notices is not None:
            self.notices.show(text, level)


def _copies(layer: QgsVectorLayer) -> list[QgsFeature]:
    """The layer's features now, as copies that later edits of the layer leave alone."""
    return [QgsFeature(feature) for feature in layer.getFeatures()]
