"""Processing's PRECISION parameter: the real worker loads the demo model in the precision it asks for, and the
log and the result's ``model`` attribute say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingFeedback, QgsVectorLayer

from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider
from rsrefseg2_qgis.requests import PRECISIONS

ALGORITHM = "rsrefseg2:referringsegmentation"


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every info line the algorithm writes to the Processing log."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS's name)
        self.infos.append(info)
        super().pushInfo(info)


@pytest.fixture
def provider(qgis_processing, worker_client):
    registered = RSRefSeg2Provider(client=lambda: worker_client)
    QgsApplication.processingRegistry().addProvider(registered)
    yield registered
    QgsApplication.processingRegistry().removeProvider(registered)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_processing_loads_the_precision_its_parameter_asks_for(provider, sample_tif: Path, tmp_path: Path,
                                                               precision: str) -> None:
    import processing

    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    parameter = algorithm.parameterDefinition("PRECISION")
    assert parameter.options() == ["Automatic", "fp32", "bf16"] and parameter.defaultValue() == 0
    assert parameter.flags() & parameter.Flag.FlagAdvanced and "bf16" in parameter.help()
    out = tmp_path / f"{precision}.gpkg"
    feedback = RecordingFeedback()
    processing.run(ALGORITHM, {"INPUT": str(sample_tif), "PHRASE": "the large pond", "DEVICE": "cpu",
                               "PRECISION": [value for value, _ in PRECISIONS].index(precision),
                               "OUTPUT": str(out)}, feedback=feedback)
    assert f"Computed in {precision} (requested)" in feedback.infos, feedback.infos
    layer = QgsVectorLayer(str(out), "check", "ogr")
    models = {feature["model"] for feature in layer.getFeatures()}
    assert models and all(model.endswith(f"· {precision}") for model in models), models
    del layer
