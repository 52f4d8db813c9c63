"""Processing algorithm ``rsrefseg2:referringsegmentation``: phrases → polygons on a raster layer.

Runs on Processing's worker thread (no ``FlagNoThreading``): it plans the raster read, talks to the shared worker
client with progress and cancel through ``feedback``, and copies the worker's polygons into the output sink.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

from ..auto_resolution import automatic_note, automatic_resolution
from ..client import BackendClient, WorkerError
from ..i18n import tr, tr_count
from ..model_catalog import imported_models
from ..preload import LoadSpec, ModelInfo
from ..query import run_query
from ..raster_source import RasterInputError, extent_in_layer_crs, local_file_path, native_resolution, plan_raster
from ..requests import PRECISIONS, RESOLUTION_AUTO, SegmentRequest, request_tile_grid
from ..result_layer import layer_name
from ..settings import PYTHON_ENV, REFINEMENTS, PluginSettings, model_choice
from .styling import style_on_load

HELP_URL = "https://github.com/rsrefseg2-qgis/rsrefseg2-qgis#readme"  # metadata.txt's homepage, usage section
LOAD_MODES = ("trained", "zero-shot")
SEARCH_MODES = ("view", "find-all")


def result_fields() -> QgsFields:
    """The attributes the engine writes for every polygon."""
    if Qgis.QGIS_VERSION_INT >= 33800:  # QMetaType field types (the only ones left with Qt 6 / QGIS 4)
        text, number = QMetaType.Type.QString, QMetaType.Type.Double
    else:
        text, number = QVariant.String, QVariant.Double
    fields = QgsFields()
    for name, kind in (("query", text), ("score", number), ("area_m2", number), ("model", text),
                       ("checkpoint", text)):
        fields.append(QgsField(name, kind))
    return fields


class ReferringSegmentationAlgorithm(QgsProcessingAlgorithm):
    """Segment the objects that phrases describe; one polygon layer with a ``query`` attribute per polygon.

    Args:
        client: returns the shared worker client; called with a Python path when the ``PYTHON`` parameter is set.
        active_layer: returns QGIS's active layer (None headless): a raster there is the Raster layer default.
    """

    INPUT = "INPUT"
    PHRASE = "PHRASE"
    PHRASES_FILE = "PHRASES_FILE"
    EXTENT = "EXTENT"
    RESOLUTION = "RESOLUTION"
    MODE = "MODE"
    MODEL = "MODEL"
    CHECKPOINT = "CHECKPOINT"
    SEARCH = "SEARCH"
    DEVICE = "DEVICE"
    PRECISION = "PRECISION"
    REFINE = "REFINE"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    THRESHOLD = "THRESHOLD"
    ALL_MATCHES = "ALL_MATCHES"
    PYTHON = "PYTHON"
    OUTPUT = "OUTPUT"
    PROBABILITY = "PROBABILITY"

    def __init__(self, *, client: Callable[..., BackendClient],
                 active_layer: Callable[[], QgsMapLayer | None] = lambda: None) -> None:
        super().__init__()
        self._client = client
        self._active_layer = active_layer
        self._imported = imported_models()  # the MODEL choices after the first, as listed when it was made

    def createInstance(self) -> ReferringSegmentationAlgorithm:  # noqa: N802 (QGIS's name)
        return ReferringSegmentationAlgorithm(client=self._client, active_layer=self._active_layer)

    def name(self) -> str:
        return "referringsegmentation"

    def displayName(self) -> str:  # noqa: N802
        return tr("Referring segmentation")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr("Segments the objects a phrase describes (\"the large white storage tank\") in a raster layer "
                  "with RSRefSeg 2 and writes them as polygons in the raster's CRS, with the attributes query, "
                  "score, area_m2, model and checkpoint. Give one phrase or a text file with one phrase per line.")

    def helpUrl(self) -> str:  # noqa: N802
        return HELP_URL

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        defaults = PluginSettings.load()
        add = self._add
        active = self._active_layer()
        add(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster layer"), defaultValue=active.id()
                                              if isinstance(active, QgsRasterLayer) else None),
            tr("The imagery; web maps are read through their provider at the chosen resolution."))
        add(QgsProcessingParameterString(self.PHRASE, tr("Phrase"), optional=True),
            tr("The referring expression, e.g. 'the red-roofed building next to the road'."))
        add(QgsProcessingParameterFile(self.PHRASES_FILE, tr("Phrases file (one per line)"),
                                       extension="txt", optional=True),
            tr("A UTF-8 text file with one phrase per line; used in addition to Phrase."))
        add(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True),
            tr("The area to segment; empty means the whole layer."))
        add(QgsProcessingParameterNumber(self.RESOLUTION, tr("Resolution (map units per pixel, 0 = automatic)"),
                                         QgsProcessingParameterNumber.Type.Double, 0.0, minValue=0.0),
            tr("Map units per pixel the raster is read at. 0 = automatic: the scale the model was trained at "
               "when its checkpoint records it (within its range), else the raster's native resolution; the "
               "log says which was used. Web maps need a number unless the model records its scale."))
        add(QgsProcessingParameterEnum(self.MODE, tr("Mode"), [tr("Trained checkpoint"), tr("Zero-shot")],
                                       defaultValue=LOAD_MODES.index(defaults.mode)),
            tr("Trained: a checkpoint (the bundled demo model if none is given). Zero-shot: base weights only."))
        choices = [tr("The checkpoint file below (empty: the demo model)")] + [m.label for m in self._imported]
        add(QgsProcessingParameterEnum(self.MODEL, tr("Model"), choices, defaultValue=0, optional=True),
            tr("A model by name: the checkpoints imported into the weights folder (python -m backend weights "
               "download rsrefseg2-rrsisd, or weights import-authors FILE), with their dataset and reported "
               "score; {listed}. The first choice uses the Checkpoint file.").format(
                listed="; ".join(f"{i} = {m.name}" for i, m in enumerate(self._imported, 1)) or tr("none yet")))
        add(QgsProcessingParameterFile(self.CHECKPOINT, tr("Checkpoint"), extension="safetensors",
                                       optional=True),
            tr("An RSRefSeg 2 .safetensors checkpoint; empty uses the demo model, or an untrained tiny model "
               "when none is installed."))
        add(QgsProcessingParameterEnum(self.SEARCH, tr("Find"), [tr("The object in the view"),
                                                                 tr("Every match (tiled)")], defaultValue=0),
            tr("View: the extent is one picture with one referred object. Every match: tile it and keep all."),
            advanced=True)
        add(QgsProcessingParameterString(self.DEVICE, tr("Device"), defaultValue=defaults.device),
            tr("auto, cpu, cuda, cuda:N or mps."), advanced=True)
        precision_values = [value for value, _ in PRECISIONS]
        add(QgsProcessingParameterEnum(self.PRECISION, tr("Precision"), [tr(label) for _, label in PRECISIONS],
                                       defaultValue=precision_values.index(defaults.precision)),
            tr("Compute precision of the model. Automatic: bf16 on CUDA and on CPUs that compute it natively "
               "(AVX512-BF16 or AMX; about twice as fast, masks nearly the same), fp32 elsewhere; the log says "
               "which was used and why."), advanced=True)
        refine_values = [value for value, _ in REFINEMENTS]
        add(QgsProcessingParameterEnum(self.REFINE, tr("Refinement"), [tr(label) for _, label in REFINEMENTS],
                                       defaultValue=refine_values.index(defaults.refine)
                                       if defaults.refine in refine_values else 0),
            tr("View mode, when the extent is larger than the model's input: how the coarse result is refined at "
               "full resolution on the tiles under it."), advanced=True)
        add(QgsProcessingParameterNumber(self.TILE_SIZE, tr("Tile size (pixels, 0 = the model's input size)"),
                                         QgsProcessingParameterNumber.Type.Integer, defaults.tile_size,
                                         minValue=0),
            tr("Side of the square tiles the engine works on; 0 sees tiles at full resolution."))
        add(QgsProcessingParameterNumber(self.OVERLAP, tr("Tile overlap (pixels)"),
                                         QgsProcessingParameterNumber.Type.Integer, defaults.overlap,
                                         minValue=0),
            tr("Overlap between neighbouring tiles (with tile size 0: an eighth of the tile)."))
        add(QgsProcessingParameterNumber(self.THRESHOLD, tr("Threshold"), QgsProcessingParameterNumber.Type.Double,
                                         defaults.threshold, minValue=0.01, maxValue=0.99),
            tr("Mask probability above which a pixel belongs to the object."))
        add(QgsProcessingParameterBoolean(self.ALL_MATCHES, tr("All matches"), defaultValue=False),
            tr("View mode: keep every object the phrase matches, not only the best one (a referring phrase names "
               "one object; others are kept only when they score almost as high)."))
        add(QgsProcessingParameterFile(self.PYTHON, tr("Worker Python"), optional=True,
                                       fileFilter="All files (*)"),  # the default, (*.*), wants a dot in the name
            tr("A Python with PyTorch that runs the model; empty = the {env} environment variable, else the "
               "plugin setting, else the plugin's own environment.").format(env=PYTHON_ENV), advanced=True)
        add(QgsProcessingParameterFeatureSink(self.OUTPUT, tr("Segmented objects"),
                                              QgsProcessing.SourceType.TypeVectorPolygon),
            tr("Polygons with query, score, area_m2, model and checkpoint (GeoPackage or temporary layer)."))
        add(QgsProcessingParameterRasterDestination(self.PROBABILITY, tr("Probability raster"), optional=True,
                                                    createByDefault=False),
            tr("Optional: the phrase's probability over the area read as a GeoTIFF (float32 0-1, one band per "
               "phrase, nodata -1 outside the raster; in find-all mode the stitched tiles)."))

    def _add(self, parameter: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False) -> None:
        parameter.setHelp(help_text)
        if advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(parameter)

    def _phrases(self, parameters, context) -> tuple[str, ...]:
        phrases = [self.parameterAsString(parameters, self.PHRASE, context).strip()]
        path = self.parameterAsFile(parameters, self.PHRASES_FILE, context)
        if path:
            phrases += Path(path).read_text(encoding="utf-8").splitlines()
        phrases = [phrase.strip() for phrase in phrases if phrase.strip()]
        if not phrases:
            raise QgsProcessingException(tr("Give a phrase or a file of phrases."))
        return tuple(phrases)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(tr("The raster layer could not be loaded."))
        phrases = self._phrases(parameters, context)
        mode = LOAD_MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        picked = self.parameterAsEnum(parameters, self.MODEL, context)
        checkpoint = (str(self._imported[picked - 1].path) if 0 < picked <= len(self._imported) else
                      self.parameterAsFile(parameters, self.CHECKPOINT, context))
        model = model_choice(checkpoint, mode)
        if model.untrained:
            feedback.pushWarning(tr("No checkpoint: the tiny model runs with random weights (untrained)."))
        python = self.parameterAsFile(parameters, self.PYTHON, context)
        client = self._client(Path(python)) if python else self._client()
        search = SEARCH_MODES[self.parameterAsEnum(parameters, self.SEARCH, context)]
        spec = LoadSpec(checkpoint=model.checkpoint, config=model.config, mode=mode,
                        device=self.parameterAsString(parameters, self.DEVICE, context) or "auto",
                        precision=PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)][0])
        probability = (self.parameterAsOutputLayer(parameters, self.PROBABILITY, context)
                       if parameters.get(self.PROBABILITY) else None)
        try:
            extent = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                extent = extent_in_layer_crs(layer, rect, layer.crs(), context.project())
            tile_size, overlap = request_tile_grid(self.parameterAsInt(parameters, self.TILE_SIZE, context),
                                                   self.parameterAsInt(parameters, self.OVERLAP, context))
            resolution, note = self.parameterAsDouble(parameters, self.RESOLUTION, context) or RESOLUTION_AUTO, ""
            if resolution == RESOLUTION_AUTO and local_file_path(layer) is None:
                resolution, note = self._automatic_resolution(layer, extent, spec, client, search, feedback)
            request = SegmentRequest(
                layer_id=layer.id(), phrases=phrases,
                extent=None if extent is None else (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                                    extent.yMaximum()),
                resolution=resolution, load_mode=mode, checkpoint=spec.checkpoint, config=spec.config,
                device=spec.device, precision=spec.precision, search=search,
                refine=REFINEMENTS[self.parameterAsEnum(parameters, self.REFINE, context)][0],
                tile_size=tile_size, overlap=overlap,
                threshold=self.parameterAsDouble(parameters, self.THRESHOLD, context),
                all_matches=self.parameterAsBoolean(parameters, self.ALL_MATCHES, context), resolution_note=note,
                probability=bool(probability))
            plan = plan_raster(layer, extent, request.resolution, PluginSettings.load().max_pixels)
        except RasterInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        except WorkerError as exc:
            raise QgsProcessingException(str(exc)) from exc
        work_dir = Path(tempfile.mkdtemp(prefix="rsrefseg2-"))
        outputs = {}
        try:
            def progress(fraction: float, text: str) -> None:
                feedback.setProgress(100.0 * fraction)
                feedback.setProgressText(text)

            reply = run_query(client=client, request=request, plan=plan, work_dir=work_dir,
                              on_progress=progress, is_cancelled=feedback.isCanceled)
            # The sink (the output file) is created only now, so a cancelled or failed run leaves no file.
            sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, result_fields(),
                                                 QgsWkbTypes.Type.MultiPolygon, layer.crs())
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
            self._copy(reply.result.outputs.geojson, sink)
            if probability:
                self._put_probability(reply.result.outputs.probability, probability)
                outputs[self.PROBABILITY] = probability
            if context.willLoadLayerOnCompletion(dest_id):  # named like the dock's layers, not "Segmented objects"
                context.layerToLoadOnCompletionDetails(dest_id).name = layer_name(phrases)
            style_on_load(context, dest_id)
            computed = ModelInfo.from_reply(reply.loaded).compute()
            if computed:
                feedback.pushInfo(tr("Computed in {precision}").format(precision=computed))
            note = request.resolution_note or reply.result.resolution_note
            if note:
                feedback.pushInfo(tr("Read at {note}").format(note=note))
            for summary in reply.result.phrases:
                feedback.pushInfo(tr("'{query}': {objects}").format(
                    query=summary.query, objects=tr_count(summary.count, "{count} object", "{count} objects")))
        except WorkerError as exc:
            if exc.code == "cancelled":
                return {}
            raise QgsProcessingException(str(exc)) from exc
        except RasterInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        return {self.OUTPUT: dest_id, **outputs}

    @staticmethod
    def _automatic_resolution(layer, extent: QgsRectangle | None, spec: LoadSpec, client: BackendClient,
                              search: str, feedback) -> tuple[float | None, str]:
        """The model's scale for a layer the plugin reads itself (the model is loaded first to learn it), and why."""
        feedback.setProgressText(tr("Loading the model…"))
        info = ModelInfo.from_reply(spec.load(client, is_cancelled=feedback.isCanceled))
        resolution = automatic_resolution(crs=layer.crs(), extent=extent or layer.extent(), scale=info.scale,
                                          search=search, fallback=native_resolution(layer))
        if resolution is None:
            return None, ""
        return resolution, automatic_note(crs=layer.crs(), resolution=resolution, scale=info.scale)

    @staticmethod
    def _put_probability(source: str, destination: str) -> None:
        """Copy the worker's probability GeoTIFF to ``destination`` in full, then put it in place (a reader never
        sees half a file)."""
        scratch = f"{destination}.rsrefseg2-partial"
        try:
            shutil.copyfile(source, scratch)
            os.replace(scratch, destination)
        except OSError as exc:
            Path(scratch).unlink(missing_ok=True)
            raise QgsProcessingException(tr("Cannot write the probability raster {path}: {error}").format(
                path=destination, error=exc.strerror or exc)) from exc

    @staticmethod
    def _copy(geojson: str, sink: QgsFeatureSink) -> None:
        source = QgsVectorLayer(geojson, "result", "ogr")
        if not source.isValid():
            raise QgsProcessingException(tr("Cannot read the worker's result {path}.").format(path=geojson))
        fields = result_fields()
        for feature in source.getFeatures():
            copy = QgsFeature(fields)
            geometry = feature.geometry()
            geometry.convertToMultiType()
            copy.setGeometry(geometry)
            for name in fields.names():
                if feature.fields().indexOf(name) >= 0:
                    copy.setAttribute(name, feature[name])
            sink.addFeature(copy, QgsFeatureSink.Flag.FastInsert)
