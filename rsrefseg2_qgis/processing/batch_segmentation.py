"""Processing algorithm ``rsrefseg2:batchreferringsegmentation``: the same phrases on many raster layers or files.

One run, one worker, one loaded model: every input goes through the provider's shared worker client, which keeps
the model between requests (``BackendClient.load``), so the model loads once for all inputs. Each input gets a
GeoPackage named after it in the output folder; the merged layer (every input's polygons, with the input's name
in ``source``, in the CRS of the first input that runs) is the algorithm's output. An input that fails is
reported and the others go on; cancelling stops the running request and the inputs after it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsRasterLayer,
    QgsWkbTypes,
)

from ..client import BackendClient, WorkerError
from ..i18n import tr, tr_count
from ..model_catalog import imported_models
from ..query import run_query
from ..raster_source import RasterInputError, RasterPlan, plan_raster
from ..requests import SegmentRequest
from ..result_layer import layer_name
from ..settings import PluginSettings
from . import shared
from .batch_outputs import BatchOutputError, existing_files, output_stems, write_geopackage
from .shared import HELP_URL, RunChoices, add_parameter, result_features, result_fields
from .styling import style_on_load

SOURCE_FIELD = "source"


class BatchReferringSegmentationAlgorithm(shared.SharedParameterNames, QgsProcessingAlgorithm):
    """Segment the objects that phrases describe in each of several rasters, with one model load for all.

    Args:
        client: returns the shared worker client; called with a Python path when the ``PYTHON`` parameter is set.
    """

    INPUTS = "INPUTS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OVERWRITE = "OVERWRITE"
    OUTPUT = "OUTPUT"
    DONE = "DONE"
    FAILED = "FAILED"

    def __init__(self, *, client: Callable[..., BackendClient]) -> None:
        super().__init__()
        self._client = client
        self._imported = imported_models()  # the MODEL choices after the first, as listed when it was made

    def createInstance(self) -> BatchReferringSegmentationAlgorithm:  # noqa: N802 (QGIS's name)
        return BatchReferringSegmentationAlgorithm(client=self._client)

    def name(self) -> str:
        return "batchreferringsegmentation"

    def displayName(self) -> str:  # noqa: N802
        return tr("Batch referring segmentation")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr("Segments the objects phrases describe in each of several raster layers or files, loading the "
                  "model once for all of them. Each input gets a GeoPackage named after it in the output folder; "
                  "the merged layer holds every input's polygons with the input's name in 'source'. An input that "
                  "fails is reported in the log and the others go on.")

    def helpUrl(self) -> str:  # noqa: N802
        return HELP_URL

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        add_parameter(self, QgsProcessingParameterMultipleLayers(self.INPUTS, tr("Raster layers or files"),
                                                                 QgsProcessing.SourceType.TypeRaster),
                      tr("The rasters to segment, each as a whole; web maps are read through their provider."))
        shared.add_phrase_parameters(self)
        shared.add_model_parameters(self, self._imported)
        add_parameter(self, QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, tr("Output folder")),
                      tr("Gets one GeoPackage per input, named after it (<name>.gpkg)."))
        add_parameter(self, QgsProcessingParameterBoolean(self.OVERWRITE, tr("Replace existing GeoPackages"),
                                                          defaultValue=False),
                      tr("Off: the run refuses to start when an input's GeoPackage exists in the output folder."))
        add_parameter(self, QgsProcessingParameterFeatureSink(self.OUTPUT, tr("Merged objects"),
                                                              QgsProcessing.SourceType.TypeVectorPolygon),
                      tr("Every input's polygons with query, score, area_m2, model, checkpoint and source (the "
                         "input's name), in the CRS of the first input that runs."))
        self.addOutput(QgsProcessingOutputNumber(self.DONE, tr("Inputs segmented")))
        self.addOutput(QgsProcessingOutputNumber(self.FAILED, tr("Inputs that failed")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layers = [layer for layer in self.parameterAsLayerList(parameters, self.INPUTS, context)
                  if isinstance(layer, QgsRasterLayer)]
        if not layers:
            raise QgsProcessingException(tr("Give at least one raster layer or file."))
        choices = shared.read_choices(self, parameters, context, self._imported)
        folder = Path(self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context))
        stems = output_stems(layers)
        overwrite = self.parameterAsBoolean(parameters, self.OVERWRITE, context)
        taken = existing_files(folder, stems)
        if taken and not overwrite:
            raise QgsProcessingException(tr(
                "The output folder has GeoPackages of these inputs already: {files}. Choose another folder, move "
                "them away, or tick 'Replace existing GeoPackages'.").format(
                    files=", ".join(path.name for path in taken)))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QgsProcessingException(tr("Cannot create the output folder {folder}: {error}").format(
                folder=folder, error=exc.strerror or exc)) from exc
        if choices.untrained:
            feedback.pushWarning(tr("No checkpoint: the tiny model runs with random weights (untrained)."))
        client = choices.client(self._client)
        planned, failed = self._plan_all(layers, stems, choices, client, feedback)
        # The CRS of the first input that can run (one that cannot may have none).
        merged_crs = planned[0][0].crs() if planned else layers[0].crs()
        merged_fields = result_fields()
        merged_fields.append(QgsField(SOURCE_FIELD, shared.field_types()[0]))
        merged: list[QgsFeature] = []
        done = 0
        for index, (layer, stem, request, plan) in enumerate(planned):
            if feedback.isCanceled():
                break
            label = tr("[{index}/{total}] {name}").format(index=index + 1, total=len(planned), name=stem)

            def progress(fraction: float, text: str, index: int = index, label: str = label) -> None:
                feedback.setProgress(100.0 * (index + fraction) / len(planned))
                feedback.setProgressText(f"{label}: {text}")

            try:
                merged += self._segment(client=client, layer=layer, request=request, plan=plan,
                                        path=folder / f"{stem}.gpkg", overwrite=overwrite,
                                        merged_fields=merged_fields, merged_crs=merged_crs, context=context,
                                        on_progress=progress, feedback=feedback)
            except (WorkerError, RasterInputError, BatchOutputError, QgsProcessingException) as exc:
                if isinstance(exc, WorkerError) and exc.code == "cancelled":
                    break
                failed += 1
                feedback.reportError(tr("{label}: {error}").format(label=label, error=exc), fatalError=False)
                continue
            done += 1
        if feedback.isCanceled():
            feedback.pushInfo(tr("Cancelled after {done} of {total} inputs; their GeoPackages are in {folder}.")
                              .format(done=done, total=len(layers), folder=folder))
            return {}
        if not done:
            raise QgsProcessingException(tr("No input could be segmented ({failed} failed; the log says why).")
                                         .format(failed=failed))
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, merged_fields,
                                             QgsWkbTypes.Type.MultiPolygon, merged_crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        sink.addFeatures(merged, QgsFeatureSink.Flag.FastInsert)
        if context.willLoadLayerOnCompletion(dest_id):
            context.layerToLoadOnCompletionDetails(dest_id).name = layer_name(choices.phrases)
        style_on_load(context, dest_id)
        feedback.pushInfo(tr("{done} segmented, {failed} failed; {objects} in the merged layer.").format(
            done=tr_count(done, "{count} input", "{count} inputs"), failed=failed,
            objects=tr_count(len(merged), "{count} object", "{count} objects")))
        return {self.OUTPUT: dest_id, self.OUTPUT_FOLDER: str(folder), self.DONE: done, self.FAILED: failed}

    @staticmethod
    def _plan_all(layers: list[QgsRasterLayer], stems: list[str], choices: RunChoices, client: BackendClient,
                  feedback) -> tuple[list[tuple[QgsRasterLayer, str, SegmentRequest, RasterPlan]], int]:
        """Each input's query on the whole layer and its raster read, checked before any query runs; an input
        that cannot be segmented (no CRS, too large, …) is reported and left out.

        Returns:
            (layer, stem, request, plan) of the inputs that can run, and how many were left out.
        """
        planned, failed = [], 0
        for layer, stem in zip(layers, stems, strict=True):
            try:
                resolution, note = shared.layer_resolution(layer, None, choices, client, feedback)
                request = choices.request(layer, None, resolution, note)
                plan = plan_raster(layer, None, request.resolution, PluginSettings.load().max_pixels)
            except (RasterInputError, WorkerError) as exc:
                if isinstance(exc, WorkerError) and exc.code == "cancelled":
                    break
                failed += 1
                feedback.reportError(tr("{name}: {error}").format(name=stem, error=exc), fatalError=False)
                continue
            planned.append((layer, stem, request, plan))
        return planned, failed

    @staticmethod
    def _segment(*, client: BackendClient, layer: QgsRasterLayer, request: SegmentRequest, plan: RasterPlan,
                 path: Path, overwrite: bool, merged_fields: QgsFields, merged_crs: QgsCoordinateReferenceSystem,
                 context, on_progress: Callable[[float, str], None], feedback) -> list[QgsFeature]:
        """Run one input's query, write its GeoPackage ``path`` (table: its stem) and return its polygons for the
        merged layer (``merged_fields``, with ``source``; reprojected to ``merged_crs``).

        Raises:
            WorkerError: the worker failed or the request was cancelled (code "cancelled").
            RasterInputError: the layer's pixels could not be read.
            BatchOutputError: the GeoPackage could not be put in place.
        """
        work_dir = Path(tempfile.mkdtemp(prefix="rsrefseg2-"))
        try:
            reply = run_query(client=client, request=request, plan=plan, work_dir=work_dir,
                              on_progress=on_progress, is_cancelled=feedback.isCanceled)
            geojson = reply.result.outputs.geojson
            fields = result_fields()
            write_geopackage(path, table=path.stem, features=result_features(geojson, fields), fields=fields,
                             crs=layer.crs(), transform_context=context.transformContext(), overwrite=overwrite)
            shared.report_reply(feedback, request, reply)
            transform = (None if layer.crs() == merged_crs else
                         QgsCoordinateTransform(layer.crs(), merged_crs, context.transformContext()))
            return result_features(geojson, merged_fields, transform, {SOURCE_FIELD: path.stem})
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
