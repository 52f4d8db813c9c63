"""Build the result layer on the main thread: read the worker's GeoJSON, keep or save it (``result_style`` styles)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

from .i18n import tr

NAME_PREFIX = "rsrefseg: "
NAME_LENGTH = 40


class ResultLayerError(Exception):
    """The worker's output could not be turned into a layer (message says which file and why)."""


def layer_name(phrases: tuple[str, ...]) -> str:
    """``"rsrefseg: <phrase…>"``: the first phrase, cut to ``NAME_LENGTH`` characters, "+N" for more phrases."""
    phrase = phrases[0].strip()
    if len(phrase) > NAME_LENGTH:
        phrase = phrase[:NAME_LENGTH - 1].rstrip() + "…"
    more = f" (+{len(phrases) - 1})" if len(phrases) > 1 else ""
    return f"{NAME_PREFIX}{phrase}{more}"


def memory_copy(source_path: str, *, name: str, crs_wkt: str) -> QgsVectorLayer:
    """Copy the features of a GeoJSON/GPKG file into a memory layer (so the worker's temp files can go).

    Args:
        source_path: the file the worker wrote.
        name: the new layer's name.
        crs_wkt: the polygons' CRS (the raster's), as the worker reported it.

    Returns:
        A valid memory polygon layer with the file's fields and features, in ``crs_wkt``.
    """
    source = QgsVectorLayer(source_path, "result", "ogr")
    if not source.isValid():
        raise ResultLayerError(tr("Cannot read the result file {path}.").format(path=source_path))
    crs = QgsCoordinateReferenceSystem.fromWkt(crs_wkt) if crs_wkt else source.crs()
    layer = QgsVectorLayer(f"MultiPolygon?crs={crs.authid() or 'EPSG:4326'}", name, "memory")
    layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes(source.fields().toList())
    layer.updateFields()
    features = []
    for feature in source.getFeatures():
        copy = QgsFeature(layer.fields())
        geometry = feature.geometry()
        geometry.convertToMultiType()
        copy.setGeometry(geometry)
        copy.setAttributes(feature.attributes())
        features.append(copy)
    provider.addFeatures(features)
    layer.updateExtents()
    return layer


def free_layer_name(gpkg_path: str, wanted: str) -> str:
    """``wanted``, or ``wanted_2``, ``wanted_3``… : the first name not yet used in ``gpkg_path``."""
    if not Path(gpkg_path).exists():
        return wanted
    existing = QgsVectorLayer(gpkg_path, "probe", "ogr")
    taken = {sub.split("!!::!!")[1] for sub in existing.dataProvider().subLayers()} if existing.isValid() else set()
    name, number = wanted, 1
    while name in taken:
        number += 1
        name = f"{wanted}_{number}"
    return name


def save_to_geopackage(layer: QgsVectorLayer, gpkg_path: str, project: QgsProject) -> QgsVectorLayer:
    """Write ``layer`` into ``gpkg_path`` as a new table (never overwriting a file or a table), reload it from there.

    Returns:
        The saved layer, named like ``layer``.
    """
    table = free_layer_name(gpkg_path, layer.name().removeprefix(NAME_PREFIX).strip() or "rsrefseg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    options.actionOnExistingFile = (QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
                                    if Path(gpkg_path).exists()
                                    else QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile)
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, gpkg_path, project.transformContext(), options)
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise ResultLayerError(tr("Cannot save the result into {path}: {message}").format(
            path=gpkg_path, message=message))
    return QgsVectorLayer(f"{gpkg_path}|layername={table}", layer.name(), "ogr")


CLICKS_FIELD = "clicks"


def replace_features(layer: QgsVectorLayer, features: list[QgsFeature], clicks: int) -> None:
    """Put ``features`` in place of the result layer's own (the same layer: style and position stay), each with
    the attribute ``clicks`` (added when missing) set to ``clicks``; attributes are matched by field name.

    Raises:
        ResultLayerError: the layer's provider refused the edit (e.g. a read-only GeoPackage).
    """
    provider = layer.dataProvider()
    if layer.fields().indexFromName(CLICKS_FIELD) < 0:
        if Qgis.QGIS_VERSION_INT >= 33800:  # noqa: SIM108 (check_qt6 wants the QVariant fallback in an else:)
            integer = QMetaType.Type.Int  # QMetaType field types: the only ones left with Qt 6 / QGIS 4
        else:
            integer = QVariant.Int
        if not provider.addAttributes([QgsField(CLICKS_FIELD, integer)]):
            raise ResultLayerError(tr("Cannot add the field 'clicks' to {name}.").format(name=layer.name()))
        layer.updateFields()
    fields = layer.fields()
    copies = []
    for feature in features:
        copy = QgsFeature(fields)
        geometry = QgsGeometry(feature.geometry())
        geometry.convertToMultiType()
        copy.setGeometry(geometry)
        for name in feature.fields().names():
            if fields.indexFromName(name) >= 0 and name != "fid":
                copy[name] = feature[name]
        copy[CLICKS_FIELD] = clicks
        copies.append(copy)
    old = [feature.id() for feature in layer.getFeatures()]
    if not provider.deleteFeatures(old) or not provider.addFeatures(copies)[0]:
        raise ResultLayerError(tr("Cannot update the features of {name} (is its file read-only?).").format(
            name=layer.name()))
    layer.updateExtents()
    layer.triggerRepaint()
