"""The "Referring Segmentation" dock: widgets in, a frozen ``SegmentRequest`` out (a signal). No I/O, no backend.

It also asks for the chosen model to be loaded in the background (``preload_requested``) when it opens or the
model changes, and shows the loaded model by its title and purpose (``show_model``).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapLayerProxyModel,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsDoubleSpinBox, QgsFileWidget, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFormLayout,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .auto_resolution import ModelScale, automatic_note, automatic_resolution, canvas_resolution
from .client import BackendClient
from .dock_widgets import ElidedLabel, FixedLinesLabel
from .i18n import tr
from .model_catalog import imported_models
from .notices import Notices
from .paths import demo_checkpoint
from .preload import LoadSpec, ModelInfo
from .raster_source import RasterInputError, extent_in_layer_crs, local_file_path, native_resolution
from .refine_tool import RefineMapTool
from .requests import RESOLUTION_AUTO, SegmentRequest
from .settings import PluginSettings, model_choice
from .tasks.segment_task import TaskOutcome

EXTENT_LAYER, EXTENT_CANVAS, EXTENT_DRAWN = "layer", "canvas", "drawn"
DEVICES = ("auto", "cpu", "cuda", "mps")


class SegmentDock(QDockWidget):
    """The dock panel.

    Args:
        iface: the QGIS interface (map canvas, active layer).
        settings: the saved settings (defaults for every widget and the phrase history).
        parent: the main window.

    Signals:
        run_requested(SegmentRequest): the user pressed Run or Enter with a valid request.
        cancel_requested(): the user pressed Cancel.
        diagnostics_requested(): the user pressed Diagnostics.
        restart_requested(): the user pressed Restart (a fresh worker; the chosen model is loaded again).
        preload_requested(LoadSpec): the dock is open with this model chosen: load it in the background.
    """

    run_requested = pyqtSignal(object)
    preload_requested = pyqtSignal(object)
    cancel_requested = pyqtSignal()
    diagnostics_requested = pyqtSignal()
    restart_requested = pyqtSignal()

    def __init__(self, *, iface, settings: PluginSettings, parent: QWidget | None = None) -> None:
        super().__init__(tr("Referring Segmentation"), parent)
        self.setObjectName("RSRefSeg2Dock")
        self.iface = iface
        self.settings = settings
        self._drawn: tuple[QgsRectangle, QgsCoordinateReferenceSystem] | None = None
        self._map_tool: QgsMapToolExtent | None = None
        self.refine_tool: RefineMapTool | None = None  # on the last answer that can be refined
        self._model_scale = ModelScale()  # of the last model loaded for this dock's choice
        self._chosen: LoadSpec | None = None  # the model the widgets named last
        self._error = ""  # the failure (a model load, a query) the status line shows, cleared once it is stale
        self._build()
        self._restore(settings)
        self._on_layer_changed(self.layer_combo.currentLayer())
        iface.currentLayerChanged.connect(self._follow_active_layer)
        self.visibilityChanged.connect(self._request_preload)

    # ----------------------------------------------------------------------------------------------- widgets
    def _build(self) -> None:
        body = QWidget(self)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.layer_combo.layerChanged.connect(self._on_layer_changed)
        form.addRow(tr("Raster layer"), self.layer_combo)

        self.phrase_box = QComboBox(body)
        self.phrase_box.setEditable(True)
        self.phrase_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.phrase_box.lineEdit().setPlaceholderText(tr("e.g. the large white storage tank near the road"))
        self.phrase_box.lineEdit().returnPressed.connect(self.request_run)
        form.addRow(tr("Phrase"), self.phrase_box)

        extent_row = QHBoxLayout()
        self.extent_combo = QComboBox(body)
        self.extent_combo.addItem(tr("Layer extent"), EXTENT_LAYER)
        self.extent_combo.addItem(tr("Map canvas"), EXTENT_CANVAS)
        self.extent_combo.addItem(tr("Drawn rectangle"), EXTENT_DRAWN)
        self.draw_button = QPushButton(tr("Draw"), body)
        self.draw_button.setToolTip(tr("Drag a rectangle on the map"))
        self.draw_button.clicked.connect(self._start_drawing)
        extent_row.addWidget(self.extent_combo, 1)
        extent_row.addWidget(self.draw_button)
        form.addRow(tr("Extent"), extent_row)

        self.resolution_spin = QgsDoubleSpinBox(body)
        self.resolution_spin.setRange(0.0, 100000.0)
        self.resolution_spin.setDecimals(3)
        self.resolution_spin.setSpecialValueText(tr("automatic (model's scale)"))
        form.addRow(tr("Resolution"), self.resolution_spin)

        self.mode_combo = QComboBox(body)
        self.mode_combo.addItem(tr("Trained checkpoint"), "trained")
        self.mode_combo.addItem(tr("Zero-shot (base CLIP + SAM)"), "zero-shot")
        self.mode_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow(tr("Mode"), self.mode_combo)
        model_row = QHBoxLayout()
        self.model_combo = QComboBox(body)
        self.model_combo.activated.connect(self._on_model_picked)
        self.model_info_button = QToolButton(body)  # the model's description: a tooltip, not lines in the dock
        self.model_info_button.setIcon(QgsApplication.getThemeIcon("/mIconInfo.svg"))
        self.model_info_button.setAutoRaise(True)
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.model_info_button)
        form.addRow(tr("Model"), model_row)
        self.checkpoint_widget = QgsFileWidget(body)
        self.checkpoint_widget.setFilter(tr("Checkpoints (*.safetensors)"))
        self.checkpoint_widget.fileChanged.connect(self._on_model_changed)
        form.addRow(tr("Checkpoint"), self.checkpoint_widget)
        self.model_label = ElidedLabel(body)
        form.addRow("", self.model_label)

        self.search_combo = QComboBox(body)
        self.search_combo.addItem(tr("The object in the view"), "view")
        self.search_combo.addItem(tr("Every match (tiled)"), "find-all")
        form.addRow(tr("Find"), self.search_combo)
        self.all_matches_check = QCheckBox(tr("All matches"), body)
        self.all_matches_check.setToolTip(tr("Keep every object the phrase matches in the view, not only the best "
                                             "one (a referring phrase names one object)"))
        form.addRow("", self.all_matches_check)
        self.probability_check = QCheckBox(tr("Probability raster"), body)
        self.probability_check.setToolTip(tr("Also add the model's probability over the view as a raster layer "
                                             "under the polygons (transparent at 0, the layer's colour at 1)"))
        form.addRow("", self.probability_check)
        self.device_combo = QComboBox(body)
        self.device_combo.setEditable(True)
        self.device_combo.addItems(DEVICES)
        self.device_combo.currentIndexChanged.connect(self._on_model_changed)  # picked from the list
        self.device_combo.lineEdit().editingFinished.connect(self._on_model_changed)  # typed: once, at the end
        form.addRow(tr("Device"), self.device_combo)
        self.output_widget = QgsFileWidget(body)
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output_widget.setFilter(tr("GeoPackage (*.gpkg)"))
        self.output_widget.setToolTip(tr("Optional: save each result as a new table in this GeoPackage"))
        form.addRow(tr("Save to"), self.output_widget)

        buttons = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"), body)
        self.run_button.clicked.connect(self.request_run)
        self.cancel_button = QPushButton(tr("Cancel"), body)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.diagnostics_button = QPushButton(tr("Diagnostics"), body)
        self.diagnostics_button.clicked.connect(self.diagnostics_requested)
        self.restart_button = QPushButton(tr("Restart"), body)
        self.restart_button.setToolTip(tr("Stop the backend worker and start a fresh one (after a failed or stuck "
                                          "model load); the chosen model is loaded again"))
        self.restart_button.clicked.connect(self.restart_requested)
        for button in (self.run_button, self.cancel_button, self.diagnostics_button, self.restart_button):
            buttons.addWidget(button)
        refine_buttons = QHBoxLayout()
        self.refine_button = QPushButton(tr("Refine"), body)
        self.refine_button.setCheckable(True)
        self.refine_button.setEnabled(False)
        self.refine_button.setToolTip(tr("Correct the last answer on the map: click = include, right click or "
                                         "Shift+click = exclude, drag = box; Ctrl+Z undoes, Esc leaves"))
        self.refine_button.toggled.connect(self._toggle_refine)
        self.undo_button = QPushButton(tr("Undo click"), body)
        self.undo_button.setEnabled(False)
        self.undo_button.clicked.connect(self._undo_click)
        refine_buttons.addWidget(self.refine_button)
        refine_buttons.addWidget(self.undo_button)

        self.progress_bar = QProgressBar(body)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setFormat("")  # an idle bar shows no "0%"
        self.progress_bar.setFixedHeight(self.progress_bar.sizeHint().height())
        self.status_label = FixedLinesLabel(3, body)  # a fixed height: the buttons never move with its text
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(refine_buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.setWidget(body)

    def _restore(self, settings: PluginSettings) -> None:
        self.phrase_box.addItems(list(settings.history))
        self.phrase_box.setEditText("")
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(settings.mode)))
        self.checkpoint_widget.setFilePath(settings.checkpoint)
        self.device_combo.setCurrentText(settings.device)
        self.refresh_models()
        self._update_model_label()

    # ----------------------------------------------------------------------------------------------- slots
    def _follow_active_layer(self, layer) -> None:
        if isinstance(layer, QgsRasterLayer):
            self.layer_combo.setLayer(layer)

    def _on_layer_changed(self, layer) -> None:
        if not isinstance(layer, QgsRasterLayer):
            return
        native = native_resolution(layer)
        if native is None:  # a web map covers the world: start from what the canvas shows
            self.extent_combo.setCurrentIndex(self.extent_combo.findData(EXTENT_CANVAS))
        self.resolution_spin.setValue(0.0)
        self.resolution_spin.setClearValue(0.0)
        self.resolution_spin.setToolTip(tr(
            "Map units per pixel the layer is read at. Automatic: the scale the model was trained at when its "
            "checkpoint records it, else {native}.").format(
                native=tr("the layer's native {res:g}").format(res=native) if native else tr("the canvas's")))
        if local_file_path(layer):
            self.status_label.setText(tr("“{name}” is read from its file.").format(name=layer.name()))
        else:
            self.status_label.setText(tr("“{name}” is read through its provider (e.g. a web map).").format(
                name=layer.name()))

    def _update_model_label(self) -> None:
        choice = model_choice(self.checkpoint_widget.filePath(), self.mode_combo.currentData())
        if choice.untrained:
            self._describe_model(tr("⚠ Untrained model (random weights)"), tr(
                "No checkpoint: the tiny model runs with random weights (untrained); its shapes mean nothing."))
        elif self.mode_combo.currentData() == "zero-shot":
            self._describe_model(tr("Zero-shot"), tr("Zero-shot: base CLIP and SAM weights, no trained prompter."))
        else:
            self._describe_model(tr("Model: {name}").format(name=Path(choice.checkpoint).stem), choice.checkpoint)

    def _describe_model(self, line: str, details: str) -> None:
        """One line under the Model box; everything else about the model in the tooltips of it and of ⓘ."""
        self.model_label.setText(line)
        self.model_label.setToolTip(details)
        self.model_info_button.setToolTip(details)

    def refresh_models(self) -> None:
        """List the models by name: the bundled demo, the imported checkpoints (dataset and reported score, from
        their metadata) and "Checkpoint file"; the entry of the current checkpoint is selected."""
        self.model_combo.clear()
        demo = tr("Demo model (bundled, synthetic scenes only)") if demo_checkpoint() else tr("No checkpoint")
        self.model_combo.addItem(demo, "")
        for model in imported_models():
            self.model_combo.addItem(model.label, str(model.path))
            self.model_combo.setItemData(self.model_combo.count() - 1, model.tooltip, Qt.ItemDataRole.ToolTipRole)
        self.model_combo.addItem(tr("Checkpoint file…"), None)
        self._select_model_entry()

    def _select_model_entry(self) -> None:
        path = self.checkpoint_widget.filePath()
        demo = demo_checkpoint()
        if demo is not None and path and Path(path) == demo:
            path = ""  # the demo model by its path (as older versions saved it) is the demo entry
        index = self.model_combo.findData(path)
        self.model_combo.setCurrentIndex(index if index >= 0 else self.model_combo.count() - 1)

    def _on_model_picked(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path is not None:  # "Checkpoint file…" keeps the file box for the user to fill
            self.checkpoint_widget.setFilePath(path)
            self._on_model_changed()

    def _on_model_changed(self) -> None:
        self._select_model_entry()
        spec = self.load_spec()
        if spec == self._chosen:
            return  # e.g. the device box lost focus without a change
        self._chosen = spec
        self._model_scale = ModelScale()
        self._update_model_label()
        self._request_preload(self.isVisible())

    def apply_settings(self, settings: PluginSettings) -> None:
        """Use edited settings (base weights, worker Python, threads): the model is loaded again for them."""
        self.settings = settings
        self.reload_model()

    def reload_model(self) -> None:
        """Load the chosen model again (new settings, a restarted worker); an error shown is stale now."""
        self._clear_error()
        self._chosen = None  # a new worker Python or thread count means a new worker, even for the same model
        self.refresh_models()  # e.g. one downloaded from the settings dialog
        self._on_model_changed()

    def load_spec(self) -> LoadSpec:
        """The model the widgets choose, as the worker loads it."""
        model = model_choice(self.checkpoint_widget.filePath(), self.mode_combo.currentData())
        return LoadSpec(checkpoint=model.checkpoint, config=model.config,
                        device=self.device_combo.currentText().strip() or "auto", mode=self.mode_combo.currentData(),
                        clip_weights=self.settings.clip_weights or None, sam_weights=self.settings.sam_weights or None,
                        precision=self.settings.precision)

    def _request_preload(self, visible: bool) -> None:
        if visible:
            self.refresh_models()  # a model imported while the dock was closed
            self.preload_requested.emit(self.load_spec())

    def show_model(self, spec: LoadSpec, info: ModelInfo) -> None:
        """The worker loaded ``spec``: name the model by its title and the precision it computes in, and why (its
        purpose and file in the tooltip)."""
        if spec != self.load_spec():
            return  # loaded for an earlier choice
        self._model_scale = info.scale
        self._clear_error()  # loaded now: an earlier failure to load (or a query's "no model") is stale
        line = info.title or (Path(spec.checkpoint).stem if spec.checkpoint else self.model_label.text())
        details = "\n".join(part for part in (info.label(spec.checkpoint), spec.checkpoint, info.model,
                                              tr("on {device}").format(device=info.device), info.compute()) if part)
        line = tr("Model: {name}").format(name=line) if spec.checkpoint else line
        self._describe_model(" · ".join(part for part in (line, info.compute()) if part), details)

    def show_model_error(self, spec: LoadSpec, text: str) -> None:
        """The worker could not load ``spec``: say so under the model (queries will say it again)."""
        if spec == self.load_spec():
            self._error = text
            self.status_label.setText(text)

    def _clear_error(self) -> None:
        """Remove the error from the status line, unless something newer replaced it there."""
        if self._error and self.status_label.text() == self._error:
            self.status_label.setText("")
        self._error = ""

    def _start_drawing(self) -> None:
        canvas = self.iface.mapCanvas()
        self._map_tool = QgsMapToolExtent(canvas)
        self._map_tool.extentChanged.connect(self._on_drawn)
        canvas.setMapTool(self._map_tool)

    def _on_drawn(self, rect: QgsRectangle) -> None:
        self._drawn = (QgsRectangle(rect), self.iface.mapCanvas().mapSettings().destinationCrs())
        self.extent_combo.setCurrentIndex(self.extent_combo.findData(EXTENT_DRAWN))
        self.iface.mapCanvas().unsetMapTool(self._map_tool)
        self.status_label.setText(tr("Rectangle drawn: {w:.0f} × {h:.0f} map units").format(
            w=rect.width(), h=rect.height()))

    def set_busy(self, busy: bool) -> None:
        """Enable Cancel and the bar's percentage while queries run (Run stays enabled: new queries are queued)."""
        self.cancel_button.setEnabled(busy)
        self.progress_bar.setFormat("%p%" if busy else "")
        if not busy:
            self.progress_bar.setValue(0)

    def set_drawn_extent(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rect`` (in ``crs``) as the drawn rectangle, as if the user had dragged it."""
        self._drawn = (QgsRectangle(rect), crs)
        self.extent_combo.setCurrentIndex(self.extent_combo.findData(EXTENT_DRAWN))

    # ----------------------------------------------------------------------------------------------- refine
    def offer_refinement(self, outcome: TaskOutcome, client: BackendClient, notices: Notices | None = None) -> None:
        """A query ended (a ``TaskOutcome``): make its answer the one the Refine tool edits, through ``client``
        (the worker that segmented it); an answer that cannot be refined (find-all, several phrases) disables it."""
        if outcome.status != "done":
            if outcome.status == "failed":
                self._error = outcome.text  # shown next; stale once the settings, the worker or the model change
            return  # a failed or cancelled query leaves the last answer refinable
        self._leave_refine()
        if outcome.layer is None or outcome.source is None:
            self.refine_tool = None
            self.refine_button.setEnabled(False)
            return
        canvas = self.iface.mapCanvas()
        self.refine_tool = RefineMapTool(canvas, layer=outcome.layer, source=outcome.source, client=client,
                                         notices=notices)
        tool = self.refine_tool
        tool.message.connect(self.status_label.setText)
        tool.edits_changed.connect(lambda edits: self.undo_button.setEnabled(edits > 0))
        tool.busy_changed.connect(lambda busy: self.undo_button.setEnabled(not busy and bool(tool.edits)))
        tool.deactivated.connect(lambda: self.refine_button.setChecked(False))
        self.refine_button.setEnabled(True)

    def _toggle_refine(self, checked: bool) -> None:
        if self.refine_tool is None:
            return
        canvas = self.iface.mapCanvas()
        if checked:
            canvas.setMapTool(self.refine_tool)
            self.status_label.setText(tr("Refine: click = include, right click or Shift+click = exclude, drag = "
                                         "box; Ctrl+Z undoes, Esc leaves."))
        elif canvas.mapTool() is self.refine_tool:
            canvas.unsetMapTool(self.refine_tool)

    def _undo_click(self) -> None:
        if self.refine_tool is not None:
            self.refine_tool.undo()

    def _leave_refine(self) -> None:
        if self.refine_tool is not None and self.iface.mapCanvas().mapTool() is self.refine_tool:
            self.iface.mapCanvas().unsetMapTool(self.refine_tool)
        self.refine_button.setChecked(False)
        self.undo_button.setEnabled(False)

    # ----------------------------------------------------------------------------------------------- request
    def build_request(self) -> SegmentRequest:
        """The request the widgets describe.

        Raises:
            RasterInputError: no layer, no phrase, no drawn rectangle, or an extent off the layer.
        """
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            raise RasterInputError(tr("No raster layer is selected."), tr("Add a raster layer to the project."))
        phrase = self.phrase_box.currentText().strip()
        if not phrase:
            raise RasterInputError(tr("Type a phrase that describes the object."))
        choice = self.extent_combo.currentData()
        extent = None
        if choice == EXTENT_CANVAS:
            canvas = self.iface.mapCanvas()
            extent = extent_in_layer_crs(layer, canvas.extent(), canvas.mapSettings().destinationCrs())
        elif choice == EXTENT_DRAWN:
            if self._drawn is None:
                raise RasterInputError(tr("No rectangle has been drawn."), tr("Press Draw and drag on the map."))
            extent = extent_in_layer_crs(layer, *self._drawn)
        spec = self.load_spec()
        tile_size, overlap = self.settings.tile_grid()
        resolution, note = self.resolution_spin.value() or RESOLUTION_AUTO, ""
        if resolution == RESOLUTION_AUTO and local_file_path(layer) is None:  # the plugin reads it: pick a number
            resolution = automatic_resolution(
                crs=layer.crs(), extent=extent or layer.extent(), scale=self._model_scale,
                search=self.search_combo.currentData(),
                fallback=native_resolution(layer) or canvas_resolution(self.iface.mapCanvas(), layer.crs()))
            if resolution is not None:
                note = automatic_note(crs=layer.crs(), resolution=resolution, scale=self._model_scale)
        return SegmentRequest(
            layer_id=layer.id(), phrases=(phrase,),
            extent=None if extent is None else (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                                extent.yMaximum()),
            resolution=resolution, load_mode=spec.mode, checkpoint=spec.checkpoint, config=spec.config,
            device=spec.device, precision=spec.precision, search=self.search_combo.currentData(),
            refine=self.settings.refine,
            tile_size=tile_size, overlap=overlap, threshold=self.settings.threshold,
            clip_weights=spec.clip_weights, sam_weights=spec.sam_weights,
            output_gpkg=self.output_widget.filePath() or None, all_matches=self.all_matches_check.isChecked(),
            probability=self.probability_check.isChecked(),
            resolution_note=note)

    def request_run(self) -> None:
        """Build the request and emit ``run_requested``; a problem is shown in the status line instead."""
        try:
            request = self.build_request()
        except RasterInputError as exc:
            self.status_label.setText(str(exc))
            return
        phrase = request.phrases[0]
        if self.phrase_box.findText(phrase) < 0:
            self.phrase_box.insertItem(0, phrase)
        self.run_requested.emit(request)

    def unload(self) -> None:
        """Disconnect from the interface and release the map tool (before the dock is deleted)."""
        self.iface.currentLayerChanged.disconnect(self._follow_active_layer)
        if self._map_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self._map_tool)
            self._map_tool = None
        self._leave_refine()
        self.refine_tool = None
