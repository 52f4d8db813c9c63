"""The automatic resolution for layers the plugin reads itself (WMS/XYZ, virtual): the model's scale, in map units.

A file layer is sent to the worker with resolution "auto" and the engine decides. A layer without a local file is
read by the plugin into a temporary GeoTIFF, so the plugin must pick the resolution, the way the engine would:
view mode reads the view at ``clamp(view side in metres / model input size, lo, hi)``, find-all at
``clamp(native, lo, hi)``, where ``[lo, hi]`` is the checkpoint's training range ``gsd_range_m`` (ground metres
per pixel at the model input). Without a range (or an input size), the canvas resolution is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsDistanceArea,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsUnitTypes,
)

from .i18n import tr


@dataclass(frozen=True)
class ModelScale:
    """What the loaded model says about its scale (from the worker's ``Loaded`` reply).

    Attributes:
        gsd_range_m: (lo, hi) ground metres per pixel the model was trained at, or None when unknown.
        input_size: the model's input side in pixels, or None when unknown.
    """

    gsd_range_m: tuple[float, float] | None = None
    input_size: int | None = None


def metres_per_map_unit(crs: QgsCoordinateReferenceSystem, at: QgsPointXY) -> float:
    """Ground metres per map unit of ``crs`` along x at ``at`` (ellipsoidal: right for degrees and Web Mercator)."""
    distance = QgsDistanceArea()
    distance.setSourceCrs(crs, QgsProject.instance().transformContext())
    distance.setEllipsoid("WGS84")
    step = 1e-4 * max(abs(at.x()), 1.0) if crs.isGeographic() else 1.0
    metres = distance.measureLine(at, QgsPointXY(at.x() + step, at.y()))
    return metres / step if metres > 0 else 1.0


def automatic_resolution(*, crs: QgsCoordinateReferenceSystem, extent: QgsRectangle, scale: ModelScale,
                         search: str, fallback: float | None) -> float | None:
    """The resolution (map units of ``crs`` per pixel) to read ``extent`` at for the model's scale.

    Args:
        crs: the layer's CRS.
        extent: the area to read, in ``crs``.
        scale: the loaded model's scale.
        search: "view" or "find-all".
        fallback: the resolution to start from without a model range (the canvas's, or the layer's native).

    Returns:
        Map units per pixel, or ``fallback`` when the model gives no range (None if that is None too).
    """
    if scale.gsd_range_m is None:
        return fallback
    lo, hi = scale.gsd_range_m
    per_unit = metres_per_map_unit(crs, extent.center())
    if search == "view" and scale.input_size:
        wanted_m = max(extent.width(), extent.height()) * per_unit / scale.input_size
    elif fallback is not None:
        wanted_m = fallback * per_unit
    else:
        wanted_m = lo
    return min(max(wanted_m, lo), hi) / per_unit


def canvas_resolution(canvas, crs: QgsCoordinateReferenceSystem) -> float | None:
    """What one screen pixel of ``canvas`` (a ``QgsMapCanvas``) covers, in map units of ``crs``; None if unknown."""
    settings = canvas.mapSettings()
    width = settings.outputSize().width()
    if width <= 0 or canvas.extent().isEmpty():
        return None
    if settings.destinationCrs() == crs or not settings.destinationCrs().isValid():
        return canvas.mapUnitsPerPixel()
    transform = QgsCoordinateTransform(settings.destinationCrs(), crs, QgsProject.instance())
    try:
        return transform.transformBoundingBox(canvas.extent()).width() / width
    except QgsCsException:
        return None


def automatic_note(*, crs: QgsCoordinateReferenceSystem, resolution: float, scale: ModelScale) -> str:
    """What the result says about a resolution the plugin chose, e.g. "1.2 m/px (automatic: the model was …)"."""
    units = QgsUnitTypes.toAbbreviatedString(crs.mapUnits())
    if scale.gsd_range_m is not None:
        lo, hi = scale.gsd_range_m
        why = tr("automatic: the model was trained at {lo:g}–{hi:g} m/px").format(lo=lo, hi=hi)
    else:
        why = tr("automatic: the model records no training resolution")
    return f"{resolution:.3g} {units}/px ({why})"
