"""RSRefSeg 2 for QGIS: referring segmentation of raster layers. Never imports torch (the worker does)."""

from __future__ import annotations


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS's entry point: the plugin object for ``iface``."""
    from .plugin import RSRefSeg2Plugin

    return RSRefSeg2Plugin(iface)
