"""Real-QGIS fixtures: raster layers on the sample GeoTIFF and one shared worker on the tiny config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsProject, QgsRasterLayer
from qgis_helpers import PYTHON

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.client import BackendClient

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def raster_layer(sample_tif: Path) -> Iterator[QgsRasterLayer]:
    """The sample as a GDAL file layer in the current project (removed afterwards)."""
    layer = QgsRasterLayer(str(sample_tif), "sample", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture(scope="session")
def worker_client() -> Iterator[BackendClient]:
    """One real worker (``python -m backend.worker`` in the project's venv) for the whole session."""
    client = BackendClient(python=PYTHON, backend_root=paths.backend_root())
    yield client
    client.shutdown()

