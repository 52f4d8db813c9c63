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
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsWkbTypes,
)

from ..client import BackendClient, WorkerError
from ..i18n import tr
from ..model_catalog import imported_models
from ..query import run_query
from ..raster_source import RasterInputError, extent_in_layer_crs, plan_raster
from ..result_layer import layer_name
from ..settings import PluginSettings
from . import shared
from .shared import HELP_URL, add_parameter, copy_features, result_fields
from .styling import style_on_load


class ReferringSegmentationAlgorithm(shared.SharedParameterNames, QgsProcessingAlgorithm):
    """Segment the objects that phrases describe; one polygon layer with a ``query`` attribute per polygon.

    Args:
        client: returns the shared worker client; called with a Python path when the ``PYTHON`` parameter is set.
        active_layer: returns QGIS's active layer (None headless): a raster there is the Raster layer default.
    """

    INPUT = "INPUT"
    EXTENT = "EXTENT"
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
        active = self._active_layer()
        add_parameter(self, QgsProcessingParameterRasterLayer(
            self.INPUT, tr("Raster layer"), defaultValue=active.id() if isinstance(active, QgsRasterLayer) else None),
            tr("The imagery; web maps are read through their provider at the chosen resolution."))
        shared.add_phrase_parameters(self)
        add_parameter(self, QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True),
                      tr("The area to segment; empty means the whole layer."))
        shared.add_model_parameters(self, self._imported)
        add_parameter(self, QgsProcessingParameterFeatureSink(self.OUTPUT, tr("Segmented objects"),
                                                              QgsProcessing.SourceType.TypeVectorPolygon),
                      tr("Polygons with query, score, area_m2, model and checkpoint (GeoPackage or temporary "
                         "layer)."))
        add_parameter(self, QgsProcessingParameterRasterDestination(
            self.PROBABILITY, tr("Probability raster"), optional=True, createByDefault=False),
            tr("Optional: the phrase's probability over the area read as a GeoTIFF (float32 0-1, one band per "
               "phrase, nodata -1 outside the raster; in find-all mode the stitched tiles)."))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(tr("The raster layer could not be loaded."))
        choices = shared.read_choices(self, parameters, context, self._imported)
        if choices.untrained:
            feedback.pushWarning(tr("No checkpoint: the tiny model runs with random weights (untrained)."))
        client = choices.client(self._client)
        probability = (self.parameterAsOutputLayer(parameters, self.PROBABILITY, context)
                       if parameters.get(self.PROBABILITY) else None)
        try:
            extent = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                extent = extent_in_layer_crs(layer, rect, layer.crs(), context.project())
            resolution, note = shared.layer_resolution(layer, extent, choices, client, feedback)
            request = choices.request(layer, extent, resolution, note, probability=bool(probability))
            plan = plan_raster(layer, extent, request.resolution, PluginSettings.load().max_pixels)
        except (RasterInputError, WorkerError) as exc:
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
            copy_features(reply.result.outputs.geojson, sink)
            if probability:
                self._put_probability(reply.result.outputs.probability, probability)
                outputs[self.PROBABILITY] = probability
            if context.willLoadLayerOnCompletion(dest_id):  # named like the dock's layers, not "Segmented objects"
                context.layerToLoadOnCompletionDetails(dest_id).name = layer_name(choices.phrases)
            style_on_load(context, dest_id)
            shared.report_reply(feedback, request, reply)
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
