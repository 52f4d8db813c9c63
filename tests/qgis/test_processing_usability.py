"""Processing as a user meets it (issue 25): the active raster is the default input and Help opens a page (the
loaded result's name is tested in test_processing.py)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider

ALGORITHM = "rsrefseg2:referringsegmentation"


def test_the_raster_field_starts_on_the_active_raster_and_help_has_a_page(qgis_processing, worker_client,
                                                                        sample_tif: Path) -> None:
    layer = QgsRasterLayer(str(sample_tif), "active sample", "gdal")
    QgsProject.instance().addMapLayer(layer)
    provider = RSRefSeg2Provider(client=lambda: worker_client, active_layer=lambda: layer)
    registry = QgsApplication.processingRegistry()
    registry.addProvider(provider)
    try:
        algorithm = registry.createAlgorithmById(ALGORITHM)  # what the toolbox does when the dialog opens
        assert algorithm.parameterDefinition("INPUT").defaultValue() == layer.id()
        assert algorithm.helpUrl().startswith("https://")
    finally:
        registry.removeProvider(provider)
        QgsProject.instance().removeAllMapLayers()
