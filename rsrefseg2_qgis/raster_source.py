"""Turn a QGIS raster layer + extent + resolution into a file the worker can read.

A local GDAL file layer is sent as its path plus a window in its CRS. Any other raster layer (WMS, XYZ, a
virtual raster, a ``/vsimem`` dataset, …) is read through a clone of its provider at the chosen resolution into
a temporary GeoTIFF in the layer's CRS. ``plan_raster`` runs on the main thread (it reads the layer);
``materialize`` runs on a task thread and touches only the cloned provider it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterInterface,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsSingleBandGrayRenderer,
)

from .i18n import tr
from .requests import RESOLUTION_AUTO

Extent = tuple[float, float, float, float]
_ARGB_TYPES = (Qgis.DataType.ARGB32, Qgis.DataType.ARGB32_Premultiplied)


class RasterInputError(Exception):
    """The layer/extent/resolution cannot be sent to the worker: ``message`` says why, ``hint`` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


@dataclass(frozen=True)
class RasterPlan:
    """What one query reads, decided on the main thread.

    Attributes:
        file_path: the local GDAL file of the layer, or None when pixels must be read through ``provider``.
        extent: (xmin, ymin, xmax, ymax) in the layer CRS, clipped to the layer.
        full_extent: True when ``extent`` is the whole layer.
        resolution: map units per pixel; None = the layer's native resolution, ``RESOLUTION_AUTO`` = the worker
            chooses (file layers only; other layers are read at a number).
        size: (width, height) in pixels at the effective resolution.
        crs_wkt: the layer CRS as WKT.
        bands: 1-based bands the layer's renderer shows (R, G, B or one grey band), or None for the default.
        provider: a clone of the layer's provider (non-file layers), owned by the plan.
    """

    file_path: str | None
    extent: Extent
    full_extent: bool
    resolution: float | str | None
    size: tuple[int, int]
    crs_wkt: str
    bands: tuple[int, ...] | None
    provider: QgsRasterDataProvider | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RasterInput:
    """What a ``segment`` request names: ``raster`` path, ``window`` extent in its CRS (or None), ``resolution``."""

    raster: str
    window: Extent | None
    resolution: float | str | None
    bands: tuple[int, ...] | None


def local_file_path(layer: QgsRasterLayer) -> str | None:
    """The path of ``layer``'s local GDAL file, or None when it is not one (web, virtual, /vsi…, database)."""
    if layer.providerType() != "gdal":
        return None
    path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or ""
    return path if path and not path.startswith("/vsi") and Path(path).is_file() else None


def native_resolution(layer: QgsRasterLayer) -> float | None:
    """Map units per pixel of the layer's own grid, or None for providers without one (WMS/XYZ)."""
    provider = layer.dataProvider()
    if not provider.capabilities() & QgsRasterInterface.Capability.Size or provider.xSize() <= 0:
        return None
    return layer.extent().width() / provider.xSize()


def renderer_bands(layer: QgsRasterLayer) -> tuple[int, ...] | None:
    """The bands the user's style shows: (R, G, B) of a multiband colour style or the band of a grey style."""
    renderer = layer.renderer()
    if isinstance(renderer, QgsMultiBandColorRenderer):
        bands = (renderer.redBand(), renderer.greenBand(), renderer.blueBand())
        return bands if all(band > 0 for band in bands) else None
    if isinstance(renderer, QgsSingleBandGrayRenderer) and renderer.grayBand() > 0:
        return (renderer.grayBand(),)
    return None


def extent_in_layer_crs(layer: QgsRasterLayer, rect: QgsRectangle, rect_crs: QgsCoordinateReferenceSystem,
                        project: QgsProject | None = None) -> QgsRectangle:
    """``rect`` (in ``rect_crs``) as a bounding box in the layer's CRS, clipped to the layer's extent."""
    if rect_crs.isValid() and rect_crs != layer.crs():
        transform = QgsCoordinateTransform(rect_crs, layer.crs(), project or QgsProject.instance())
        rect = transform.transformBoundingBox(rect)
    clipped = rect.intersect(layer.extent())
    if clipped.isEmpty():
        raise RasterInputError(tr("The chosen extent does not overlap the layer '{name}'.").format(
            name=layer.name()), tr("Pan the map onto the layer or choose the layer's extent."))
    return clipped


def check_size(width: int, height: int, resolution: float, max_pixels: int) -> None:
    """Refuse a window of more than ``max_pixels`` pixels, suggesting a resolution that fits.

    Raises:
        RasterInputError: saying how many pixels the window has and which coarser resolution would fit.
    """
    if width * height <= max_pixels:
        return
    factor = math.sqrt(width * height / max_pixels) * 1.01
    coarser = resolution * factor
    digits = max(0, 1 - math.floor(math.log10(coarser)))
    suggested = math.ceil(coarser * 10**digits) / 10**digits
    raise RasterInputError(
        tr("The extent is {w} × {h} pixels ({mp:.1f} Mpx) at {res:g} map units per pixel, more than the "
           "{limit:.1f} Mpx limit.").format(w=width, h=height, mp=width * height / 1e6, res=resolution,
                                            limit=max_pixels / 1e6),
        tr("Use a resolution of {res:g} or coarser, or a smaller extent.").format(res=suggested))


def plan_raster(layer: QgsRasterLayer, extent: QgsRectangle | None, resolution: float | str | None,
                max_pixels: int) -> RasterPlan:
    """Decide how the worker gets the pixels of ``extent`` (layer CRS; None = whole layer) of ``layer``.

    Args:
        layer: a valid raster layer.
        extent: the area in the layer CRS (already clipped), or None for the whole layer.
        resolution: map units per pixel, None for the native resolution or ``RESOLUTION_AUTO`` (file layers: the
            worker picks the model's scale; the size limit is checked at native resolution). WMS/XYZ layers
            need a number.
        max_pixels: the largest allowed width × height.

    Returns:
        The plan; for non-file layers it holds a clone of the provider for ``materialize``.

    Raises:
        RasterInputError: invalid layer, missing resolution or an extent too large for the resolution.
    """
    if layer is None or not layer.isValid():
        raise RasterInputError(tr("The raster layer is not valid."), tr("Choose another raster layer."))
    if not layer.crs().isValid():
        raise RasterInputError(tr("The layer '{name}' has no coordinate reference system.").format(
            name=layer.name()), tr("Set the layer's CRS in its properties."))
    full = extent is None
    rect = layer.extent() if full else extent
    native = native_resolution(layer)
    automatic = resolution == RESOLUTION_AUTO
    if automatic:
        resolution = None
    effective = resolution or native
    if effective is None:
        raise RasterInputError(tr("The layer '{name}' has no native resolution (a web map).").format(
            name=layer.name()), tr("Enter a ground resolution, for example 0.5 map units per pixel."))
    width = max(1, math.ceil(rect.width() / effective - 1e-6))
    height = max(1, math.ceil(rect.height() / effective - 1e-6))
    check_size(width, height, effective, max_pixels)
    file_path = local_file_path(layer)
    if native is not None and resolution is not None and math.isclose(resolution, native, rel_tol=1e-6):
        resolution = None
    return RasterPlan(
        file_path=file_path,
        extent=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
        full_extent=full,
        resolution=(RESOLUTION_AUTO if automatic else resolution) if file_path else effective,
        size=(width, height),
        crs_wkt=layer.crs().toWkt(),
        bands=renderer_bands(layer),
        provider=None if file_path else layer.dataProvider().clone(),
    )


def materialize(plan: RasterPlan, temp_dir: Path, feedback: QgsRasterBlockFeedback | None = None) -> RasterInput:
    """Give the worker a file: the layer's own file, or a temp GeoTIFF written from the plan's provider.

    Args:
        plan: from ``plan_raster``.
        temp_dir: a folder this query owns (the temp GeoTIFF goes there).
        feedback: cancels the provider read when cancelled.

    Returns:
        The raster path, window and resolution for the ``segment`` request.

    Raises:
        RasterInputError: the provider could not be read or written.
    """
    if plan.file_path is not None:
        window = None if plan.full_extent else plan.extent
        return RasterInput(raster=plan.file_path, window=window, resolution=plan.resolution, bands=plan.bands)
    path = Path(temp_dir) / "source.tif"
    pipe = QgsRasterPipe()
    if not pipe.set(plan.provider.clone()):
        raise RasterInputError(tr("Cannot read the layer's pixels through its provider."))
    writer = QgsRasterFileWriter(str(path))
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES"])
    crs = QgsCoordinateReferenceSystem.fromWkt(plan.crs_wkt)
    status = writer.writeRaster(pipe, plan.size[0], plan.size[1], QgsRectangle(*plan.extent), crs,
                                QgsCoordinateTransformContext(), feedback)
    if status == QgsRasterFileWriter.WriterError.WriteCanceled:
        raise RasterInputError(tr("Reading the layer was cancelled."))
    if status != QgsRasterFileWriter.WriterError.NoError or not path.is_file():
        code = getattr(status, "value", status)  # a Python enum on Qt 6 (int() refuses it), an int on Qt 5
        raise RasterInputError(tr("Could not copy the layer's pixels into a temporary GeoTIFF (error {code})."
                                  ).format(code=code), tr("Try a smaller extent or a coarser resolution."))
    bands = plan.bands
    if bands is None and plan.provider.dataType(1) in _ARGB_TYPES:
        bands = (1, 2, 3)  # rendered web maps are written as R, G, B, A
    return RasterInput(raster=str(path), window=None, resolution=None, bands=bands)

