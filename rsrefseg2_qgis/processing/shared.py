"""What the Processing algorithms share: the phrase, model and search parameters, reading them into one run's
``RunChoices``, the resolution of layers the plugin reads itself, and copying the worker's polygons into a sink.

Module functions that take the algorithm (no base class): each algorithm still subclasses
``QgsProcessingAlgorithm`` directly and keeps its parameter keys as class constants equal to the keys here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

from ..auto_resolution import automatic_note, automatic_resolution
from ..client import BackendClient
from ..i18n import tr, tr_count
from ..model_catalog import ImportedModel
from ..preload import LoadSpec, ModelInfo
from ..query import QueryResult
from ..raster_source import local_file_path, native_resolution
from ..requests import PRECISIONS, RESOLUTION_AUTO, SegmentRequest, request_tile_grid
from ..settings import PYTHON_ENV, REFINEMENTS, PluginSettings, model_choice

HELP_URL = "https://github.com/rsrefseg2-qgis/rsrefseg2-qgis#readme"  # metadata.txt's homepage, usage section
LOAD_MODES = ("trained", "zero-shot")
SEARCH_MODES = ("view", "find-all")

PHRASE = "PHRASE"
PHRASES_FILE = "PHRASES_FILE"
RESOLUTION = "RESOLUTION"
MODE = "MODE"
MODEL = "MODEL"
CHECKPOINT = "CHECKPOINT"
SEARCH = "SEARCH"
DEVICE = "DEVICE"
REFINE = "REFINE"
TILE_SIZE = "TILE_SIZE"
OVERLAP = "OVERLAP"
THRESHOLD = "THRESHOLD"
ALL_MATCHES = "ALL_MATCHES"
MIN_AREA = "MIN_AREA"
PRECISION = "PRECISION"
PYTHON = "PYTHON"


class SharedParameterNames:
    """The names of the parameters both algorithms share (``add_phrase_parameters``, ``add_model_parameters``), as
    class attributes of each algorithm (``Algorithm.PHRASE``), the way Processing code names parameters."""

    PHRASE = PHRASE
    PHRASES_FILE = PHRASES_FILE
    RESOLUTION = RESOLUTION
    MODE = MODE
    MODEL = MODEL
    CHECKPOINT = CHECKPOINT
    SEARCH = SEARCH
    DEVICE = DEVICE
    REFINE = REFINE
    TILE_SIZE = TILE_SIZE
    OVERLAP = OVERLAP
    THRESHOLD = THRESHOLD
    ALL_MATCHES = ALL_MATCHES
    MIN_AREA = MIN_AREA
    PRECISION = PRECISION
    PYTHON = PYTHON


def field_types() -> tuple[object, object]:
    """(text, number) field types of this QGIS: QMetaType from 3.38 on (the only ones left with Qt 6 / QGIS 4)."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        text, number = QMetaType.Type.QString, QMetaType.Type.Double
    else:
        text, number = QVariant.String, QVariant.Double
    return text, number


def result_fields() -> QgsFields:
    """The attributes the engine writes for every polygon."""
    text, number = field_types()
    fields = QgsFields()
    for name, kind in (("query", text), ("score", number), ("area_m2", number), ("model", text),
                       ("checkpoint", text)):
        fields.append(QgsField(name, kind))
    return fields


def add_parameter(algorithm: QgsProcessingAlgorithm, parameter: QgsProcessingParameterDefinition, help_text: str,
                  advanced: bool = False) -> None:
    """Add ``parameter`` to ``algorithm`` with its help text (and the Advanced flag)."""
    parameter.setHelp(help_text)
    if advanced:
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    algorithm.addParameter(parameter)


def add_phrase_parameters(algorithm: QgsProcessingAlgorithm) -> None:
    """``PHRASE`` and ``PHRASES_FILE``."""
    add_parameter(algorithm, QgsProcessingParameterString(PHRASE, tr("Phrase"), optional=True),
                  tr("The referring expression, e.g. 'the red-roofed building next to the road'."))
    add_parameter(algorithm, QgsProcessingParameterFile(PHRASES_FILE, tr("Phrases file (one per line)"),
                                                        extension="txt", optional=True),
                  tr("A UTF-8 text file with one phrase per line; used in addition to Phrase."))


def add_model_parameters(algorithm: QgsProcessingAlgorithm, imported: list[ImportedModel]) -> None:
    """``RESOLUTION`` … ``PYTHON``: how the raster is read, which model runs where, and how it searches.

    Args:
        algorithm: the algorithm being initialised.
        imported: the models imported into the weights folder (the ``MODEL`` choices after the first).
    """
    defaults = PluginSettings.load()

    def add(parameter: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False) -> None:
        add_parameter(algorithm, parameter, help_text, advanced)

    add(QgsProcessingParameterNumber(RESOLUTION, tr("Resolution (map units per pixel, 0 = automatic)"),
                                     QgsProcessingParameterNumber.Type.Double, 0.0, minValue=0.0),
        tr("Map units per pixel the raster is read at. 0 = automatic: the scale the model was trained at "
           "when its checkpoint records it (within its range), else the raster's native resolution; the "
           "log says which was used. Web maps need a number unless the model records its scale."))
    add(QgsProcessingParameterEnum(MODE, tr("Mode"), [tr("Trained checkpoint"), tr("Zero-shot")],
                                   defaultValue=LOAD_MODES.index(defaults.mode)),
        tr("Trained: a checkpoint (the bundled demo model if none is given). Zero-shot: base weights only."))
    choices = [tr("The checkpoint file below (empty: the demo model)")] + [m.label for m in imported]
    add(QgsProcessingParameterEnum(MODEL, tr("Model"), choices, defaultValue=0, optional=True),
        tr("A model by name: the checkpoints imported into the weights folder (python -m backend weights "
           "download rsrefseg2-rrsisd, or weights import-authors FILE), with their dataset and reported "
           "score; {listed}. The first choice uses the Checkpoint file.").format(
            listed="; ".join(f"{i} = {m.name}" for i, m in enumerate(imported, 1)) or tr("none yet")))
    add(QgsProcessingParameterFile(CHECKPOINT, tr("Checkpoint"), extension="safetensors", optional=True),
        tr("An RSRefSeg 2 .safetensors checkpoint; empty uses the demo model, or an untrained tiny model "
           "when none is installed."))
    add(QgsProcessingParameterEnum(SEARCH, tr("Find"), [tr("The object in the view"),
                                                        tr("Every match (tiled)")], defaultValue=0),
        tr("View: the extent is one picture with one referred object. Every match: tile it and keep all."),
        advanced=True)
    add(QgsProcessingParameterString(DEVICE, tr("Device"), defaultValue=defaults.device),
        tr("auto, cpu, cuda, cuda:N or mps."), advanced=True)
    refine_values = [value for value, _ in REFINEMENTS]
    add(QgsProcessingParameterEnum(REFINE, tr("Refinement"), [tr(label) for _, label in REFINEMENTS],
                                   defaultValue=refine_values.index(defaults.refine)
                                   if defaults.refine in refine_values else 0),
        tr("View mode, when the extent is larger than the model's input: how the coarse result is refined at "
           "full resolution on the tiles under it."), advanced=True)
    add(QgsProcessingParameterNumber(TILE_SIZE, tr("Tile size (pixels, 0 = the model's input size)"),
                                     QgsProcessingParameterNumber.Type.Integer, defaults.tile_size, minValue=0),
        tr("Side of the square tiles the engine works on; 0 sees tiles at full resolution."))
    add(QgsProcessingParameterNumber(OVERLAP, tr("Tile overlap (pixels)"),
                                     QgsProcessingParameterNumber.Type.Integer, defaults.overlap, minValue=0),
        tr("Overlap between neighbouring tiles (with tile size 0: an eighth of the tile)."))
    add(QgsProcessingParameterNumber(THRESHOLD, tr("Threshold"), QgsProcessingParameterNumber.Type.Double,
                                     defaults.threshold, minValue=0.01, maxValue=0.99),
        tr("Mask probability above which a pixel belongs to the object."))
    add(QgsProcessingParameterBoolean(ALL_MATCHES, tr("All matches"), defaultValue=False),
        tr("View mode: keep every object the phrase matches, not only the best one (a referring phrase names "
           "one object; others are kept only when they score almost as high)."))
    add(QgsProcessingParameterNumber(MIN_AREA, tr("Minimum area (m², empty = the model's)"),
                                     QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.0),
        tr("Polygons of less ground area are dropped. Empty: for every match (tiled or All matches) the "
           "smallest object the model can draw, from the resolution it was trained at; 0 keeps all."),
        advanced=True)
    precision_values = [value for value, _ in PRECISIONS]
    add(QgsProcessingParameterEnum(PRECISION, tr("Precision"), [tr(label) for _, label in PRECISIONS],
                                   defaultValue=precision_values.index(defaults.precision)
                                   if defaults.precision in precision_values else 0),
        tr("Compute precision of the model. Automatic: bf16 on CUDA and on CPUs that compute it natively "
           "(AVX512-BF16 or AMX; masks nearly the same), fp32 elsewhere; the log says which was used and why."),
        advanced=True)
    add(QgsProcessingParameterFile(PYTHON, tr("Worker Python"), optional=True,
                                   fileFilter="All files (*)"),  # the default, (*.*), wants a dot in the name
        tr("A Python with PyTorch that runs the model; empty = the {env} environment variable, else the "
           "plugin setting, else the plugin's own environment.").format(env=PYTHON_ENV), advanced=True)


def read_phrases(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> tuple[str, ...]:
    """The phrase and the phrases file's lines, blank ones dropped.

    Raises:
        QgsProcessingException: neither gives a phrase.
    """
    phrases = [algorithm.parameterAsString(parameters, PHRASE, context).strip()]
    path = algorithm.parameterAsFile(parameters, PHRASES_FILE, context)
    if path:
        phrases += Path(path).read_text(encoding="utf-8").splitlines()
    phrases = [phrase.strip() for phrase in phrases if phrase.strip()]
    if not phrases:
        raise QgsProcessingException(tr("Give a phrase or a file of phrases."))
    return tuple(phrases)


@dataclass(frozen=True)
class RunChoices:
    """What one algorithm run asks for, the same for every raster it reads.

    Attributes:
        phrases: the referring expressions.
        spec: the model to load (one load serves every raster of the run).
        untrained: no checkpoint: the tiny model with random weights.
        search: "view" or "find-all".
        refine: the view-mode refinement.
        tile_size, overlap: the tile grid as a request states it (None, None = the model's input size).
        threshold: mask probability threshold.
        all_matches: view mode keeps every match.
        min_area_m2: polygons of less ground area are dropped; None = the model's default.
        resolution: map units per pixel, or ``RESOLUTION_AUTO`` (the parameter was 0).
        python: the ``PYTHON`` parameter ("" = the plugin's worker Python).
    """

    phrases: tuple[str, ...]
    spec: LoadSpec
    untrained: bool
    search: str
    refine: str
    tile_size: int | None
    overlap: int | None
    threshold: float
    all_matches: bool
    min_area_m2: float | None
    resolution: float | str
    python: str

    def client(self, factory: Callable[..., BackendClient]) -> BackendClient:
        """The provider's shared worker client (for this run's Python)."""
        return factory(Path(self.python)) if self.python else factory()

    def request(self, layer: QgsRasterLayer, extent: QgsRectangle | None, resolution: float | str | None,
                note: str, probability: bool = False) -> SegmentRequest:
        """The query on ``layer`` (``extent`` in its CRS, None = all of it) at ``resolution`` (``note``: why)."""
        return SegmentRequest(
            layer_id=layer.id(), phrases=self.phrases,
            extent=None if extent is None else (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                                extent.yMaximum()),
            resolution=resolution, load_mode=self.spec.mode, checkpoint=self.spec.checkpoint,
            config=self.spec.config, device=self.spec.device, precision=self.spec.precision, search=self.search,
            refine=self.refine,
            tile_size=self.tile_size, overlap=self.overlap, threshold=self.threshold,
            all_matches=self.all_matches, resolution_note=note, probability=probability,
            min_area_m2=self.min_area_m2)


def read_choices(algorithm: QgsProcessingAlgorithm, parameters: dict, context,
                 imported: list[ImportedModel]) -> RunChoices:
    """Read the shared parameters (``add_phrase_parameters`` and ``add_model_parameters``) of one run.

    Raises:
        QgsProcessingException: no phrase was given.
    """
    phrases = read_phrases(algorithm, parameters, context)
    mode = LOAD_MODES[algorithm.parameterAsEnum(parameters, MODE, context)]
    picked = algorithm.parameterAsEnum(parameters, MODEL, context)
    checkpoint = (str(imported[picked - 1].path) if 0 < picked <= len(imported) else
                  algorithm.parameterAsFile(parameters, CHECKPOINT, context))
    model = model_choice(checkpoint, mode)
    spec = LoadSpec(checkpoint=model.checkpoint, config=model.config, mode=mode,
                    device=algorithm.parameterAsString(parameters, DEVICE, context) or "auto",
                    precision=PRECISIONS[algorithm.parameterAsEnum(parameters, PRECISION, context)][0])
    tile_size, overlap = request_tile_grid(algorithm.parameterAsInt(parameters, TILE_SIZE, context),
                                           algorithm.parameterAsInt(parameters, OVERLAP, context))
    return RunChoices(
        phrases=phrases, spec=spec, untrained=model.untrained,
        search=SEARCH_MODES[algorithm.parameterAsEnum(parameters, SEARCH, context)],
        refine=REFINEMENTS[algorithm.parameterAsEnum(parameters, REFINE, context)][0],
        tile_size=tile_size, overlap=overlap,
        threshold=algorithm.parameterAsDouble(parameters, THRESHOLD, context),
        all_matches=algorithm.parameterAsBoolean(parameters, ALL_MATCHES, context),
        min_area_m2=(None if parameters.get(MIN_AREA) in (None, "")
                     else algorithm.parameterAsDouble(parameters, MIN_AREA, context)),
        resolution=algorithm.parameterAsDouble(parameters, RESOLUTION, context) or RESOLUTION_AUTO,
        python=algorithm.parameterAsFile(parameters, PYTHON, context))


def layer_resolution(layer: QgsRasterLayer, extent: QgsRectangle | None, choices: RunChoices,
                     client: BackendClient, feedback) -> tuple[float | str | None, str]:
    """The resolution to read ``layer`` at, and why ("" = the worker explains).

    A file layer, or a set resolution, goes to the worker as it is. A layer the plugin reads itself (a web map)
    at resolution 0 is read at the model's scale: the model is loaded first to learn it (the client keeps it).
    """
    if choices.resolution != RESOLUTION_AUTO or local_file_path(layer) is not None:
        return choices.resolution, ""
    feedback.setProgressText(tr("Loading the model…"))
    info = ModelInfo.from_reply(choices.spec.load(client, is_cancelled=feedback.isCanceled))
    resolution = automatic_resolution(crs=layer.crs(), extent=extent or layer.extent(), scale=info.scale,
                                      search=choices.search, fallback=native_resolution(layer))
    if resolution is None:
        return None, ""
    return resolution, automatic_note(crs=layer.crs(), resolution=resolution, scale=info.scale)


def result_features(geojson: str, fields: QgsFields, transform: QgsCoordinateTransform | None = None,
                    extra: dict[str, object] | None = None) -> list[QgsFeature]:
    """The worker's polygons in ``geojson`` as multipolygon features with ``fields``.

    Args:
        geojson: the worker's result file.
        fields: the features' fields; those the file has are copied by name.
        transform: reprojects the geometries (None: kept in the raster's CRS).
        extra: attribute values set on every feature (field name → value).

    Raises:
        QgsProcessingException: the file cannot be read.
    """
    source = QgsVectorLayer(geojson, "result", "ogr")
    if not source.isValid():
        raise QgsProcessingException(tr("Cannot read the worker's result {path}.").format(path=geojson))
    features = []
    for feature in source.getFeatures():
        copy = QgsFeature(fields)
        geometry = feature.geometry()
        geometry.convertToMultiType()
        if transform is not None:
            geometry.transform(transform)
        copy.setGeometry(geometry)
        for name in fields.names():
            if feature.fields().indexOf(name) >= 0:
                copy.setAttribute(name, feature[name])
        for name, value in (extra or {}).items():
            copy.setAttribute(name, value)
        features.append(copy)
    return features


def copy_features(geojson: str, sink: QgsFeatureSink) -> None:
    """Add the worker's polygons in ``geojson`` to ``sink`` (``result_fields``, the raster's CRS)."""
    for feature in result_features(geojson, result_fields()):
        sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)


def report_reply(feedback, request: SegmentRequest, reply: QueryResult) -> None:
    """Tell the Processing log the answer's warnings, the precision computed in, the resolution read at (when
    explained) and each phrase's object count."""
    for warning in reply.result.warnings:
        feedback.pushWarning(tr("Warning: {warning}").format(warning=warning))
    computed = ModelInfo.from_reply(reply.loaded).compute() if reply.loaded is not None else ""
    if computed:
        feedback.pushInfo(tr("Computed in {precision}").format(precision=computed))
    note = request.resolution_note or reply.result.resolution_note
    if note:
        feedback.pushInfo(tr("Read at {note}").format(note=note))
    for summary in reply.result.phrases:
        feedback.pushInfo(tr("'{query}': {objects}").format(
            query=summary.query, objects=tr_count(summary.count, "{count} object", "{count} objects")))
