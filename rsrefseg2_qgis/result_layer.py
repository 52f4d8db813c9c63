"""Build the result layer on the main thread: read the worker's GeoJSON, keep or save it (``result_style`` styles)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

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
