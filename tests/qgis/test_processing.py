"""``processing.run("rsrefseg2:referringsegmentation", …)`` on the sample with the tiny random-init model."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsLayerTreeModel,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsLayerTreeView
from qgis_helpers import PYTHON, write_xyz_tiles

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider
from rsrefseg2_qgis.result_style import COLOUR_PROPERTY, PALETTE

ROOT = Path(__file__).resolve().parents[2]
ALGORITHM = "rsrefseg2:referringsegmentation"


@pytest.fixture
def provider(qgis_processing, worker_client):
    registered = RSRefSeg2Provider(client=lambda: worker_client)
    QgsApplication.processingRegistry().addProvider(registered)
    yield registered
    QgsApplication.processingRegistry().removeProvider(registered)


def _parameters(raster: Path, out: Path, **changes) -> dict:
    parameters = {"INPUT": str(raster), "PHRASE": "the large white storage tank", "DEVICE": "cpu",
                  "TILE_SIZE": 256, "OVERLAP": 32, "OUTPUT": str(out)}
    parameters.update(changes)
    return parameters


def test_every_parameter_has_help(provider) -> None:
    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    assert int(algorithm.flags() & algorithm.Flag.FlagNoThreading) == 0
    for parameter in algorithm.parameterDefinitions():
        assert parameter.help(), parameter.name()
    resolution = algorithm.parameterDefinition("RESOLUTION")
    assert resolution.defaultValue() == 0 and "0 = automatic" in resolution.description()
    assert algorithm.parameterDefinition("ALL_MATCHES").defaultValue() is False
    assert algorithm.parameterDefinition("PYTHON") is not None


def test_processing_run_writes_a_geopackage(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    phrases = tmp_path / "phrases.txt"
    phrases.write_text("the small grey tank\n\nthe red building\n", encoding="utf-8")
    out = tmp_path / "objects.gpkg"
    extent = "603000,603200,5339800,5340000 [EPSG:32633]"
    result = processing.run(ALGORITHM, _parameters(sample_tif, out, PHRASES_FILE=str(phrases), EXTENT=extent))
    assert Path(result["OUTPUT"].split("|")[0]) == out and out.is_file()
    layer = QgsVectorLayer(str(out), "check", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    assert layer.fields().names()[-5:] == ["query", "score", "area_m2", "model", "checkpoint"]
    assert {f["query"] for f in layer.getFeatures()} <= {"the large white storage tank", "the small grey tank",
                                                          "the red building"}
    if layer.featureCount():
        west, south, east, north = 603_000, 5_339_800, 603_200, 5_340_000
        box = layer.extent()
        assert west <= box.xMinimum() and box.xMaximum() <= east and south <= box.yMinimum() <= north
    del layer


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every text the algorithm shows in the Processing log."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def setProgressText(self, text: str) -> None:  # noqa: N802 (QGIS's name)
        self.texts.append(text)
        super().setProgressText(text)

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.texts.append(info)
        super().pushInfo(info)


def test_processing_writes_the_probability_raster_when_asked(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing
    import rasterio

    out, probability = tmp_path / "objects.gpkg", tmp_path / "probability.tif"
    extent = "603000,603200,5339800,5340000 [EPSG:32633]"
    result = processing.run(ALGORITHM, _parameters(sample_tif, out, EXTENT=extent, PROBABILITY=str(probability)))
    assert result["PROBABILITY"] == str(probability)
    with rasterio.open(probability) as src:
        assert src.crs.to_epsg() == 32633 and src.count == 1 and src.nodata == -1
        left, bottom, right, top = src.bounds
        assert 602999 <= left < right <= 603201 and 5339799 <= bottom < top <= 5340001
        values = src.read(1)
        assert ((values >= 0) & (values <= 1) | (values == -1)).all()
    assert not list(tmp_path.glob("*partial*"))
    without = processing.run(ALGORITHM, _parameters(sample_tif, tmp_path / "plain.gpkg", EXTENT=extent))
    assert "PROBABILITY" not in without or not without["PROBABILITY"]


def test_the_log_never_shows_the_workers_temporary_files(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    feedback = RecordingFeedback()
    out = tmp_path / "logged.gpkg"
    processing.run(ALGORITHM, _parameters(sample_tif, out, EXTENT="603000,603128,5339872,5340000 [EPSG:32633]"),
                   feedback=feedback)
    assert out.is_file() and feedback.texts
    leaked = [text for text in feedback.texts
              if "rsrefseg2-" in text or (tempfile.gettempdir() + "/" in text and str(tmp_path) not in text)]
    assert not leaked, leaked


@pytest.fixture
def real_layer_tree_view(qgis_iface, monkeypatch) -> QgsLayerTreeView:
    """pytest-qgis's iface answers what it lacks with a MagicMock; from QGIS 3.44 on, Processing hands
    iface.layerTreeView() to C++ (QgsProcessingGuiUtils.addResultLayers), which needs a real view."""
    view = QgsLayerTreeView()
    view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), view))
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view, raising=False)
    return view


def _vector_layers() -> list[QgsVectorLayer]:
    return [layer for layer in QgsProject.instance().mapLayers().values() if layer.type() == layer.VectorLayer]


def test_three_loaded_runs_in_one_session_are_each_styled_like_the_docks_results(
        provider, sample_tif: Path, tmp_path: Path, real_layer_tree_view) -> None:
    """Every run after the first used to fail: QGIS had deleted the one styler the module kept."""
    import processing

    for run in range(3):
        processing.runAndLoadResults(ALGORITHM, _parameters(
            sample_tif, tmp_path / f"styled{run}.gpkg", EXTENT="603000,603128,5339872,5340000 [EPSG:32633]"))
    layers = _vector_layers()
    assert len(layers) == 3 and all(layer.labelsEnabled() for layer in layers)
    assert sorted(layer.customProperty(COLOUR_PROPERTY) for layer in layers) == sorted(PALETTE[:3])
    QgsProject.instance().removeAllMapLayers()


def test_a_batch_of_three_loads_and_styles_each_output(provider, sample_tif: Path, tmp_path: Path,
                                                      real_layer_tree_view) -> None:
    """As the batch dialog does: one context per row, every row run before the results are loaded."""
    import processing
    from processing.gui.Postprocessing import handleAlgorithmResults

    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    finished = []
    for row in range(3):
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        parameters = _parameters(sample_tif, tmp_path / f"row{row}.gpkg",
                                 EXTENT="603000,603128,5339872,5340000 [EPSG:32633]")
        parameters["OUTPUT"] = QgsProcessingOutputLayerDefinition(parameters["OUTPUT"], QgsProject.instance())
        processing.run(ALGORITHM, parameters, context=context)
        finished.append(context)
    for context in finished:
        assert handleAlgorithmResults(algorithm, context, None, False)
    layers = _vector_layers()
    assert len(layers) == 3 and all(layer.labelsEnabled() for layer in layers)
    assert len({layer.customProperty(COLOUR_PROPERTY) for layer in layers}) == 3
    QgsProject.instance().removeAllMapLayers()


def test_a_web_map_is_read_at_the_scale_the_checkpoint_records(provider, sample_tif: Path, tmp_path: Path) -> None:
    """Resolution 0 on an XYZ layer: the plugin loads the model first to learn its scale, and says what it chose."""
    import processing

    x0, y0, x1, y1 = write_xyz_tiles(sample_tif, tmp_path / "tiles", zoom=18)
    web = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmin=18&zmax=18",
                         "web map", "wms")
    assert web.isValid()
    QgsProject.instance().addMapLayer(web)
    checkpoint = tmp_path / "described.safetensors"
    shutil.copy(paths.demo_checkpoint(), checkpoint)
    sidecar = json.loads(paths.demo_checkpoint().with_suffix(".json").read_text(encoding="utf-8"))
    sidecar["meta"] = {"gsd_range_m": [1.0, 2.0]}
    checkpoint.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    feedback = RecordingFeedback()
    out = tmp_path / "web.gpkg"
    processing.run(ALGORITHM, {**_parameters(web.id(), out, CHECKPOINT=str(checkpoint), TILE_SIZE=0),
                               "EXTENT": f"{x0 + 20},{x1 - 20},{y0 + 20},{y1 - 20} [EPSG:3857]"}, feedback=feedback)
    assert out.is_file()
    notes = [text for text in feedback.texts if text.startswith("Read at")]
    assert len(notes) == 1 and "(automatic: the model was trained at 1–2 m/px)" in notes[0], feedback.texts
    used = float(notes[0].split()[2])  # map units (Web Mercator metres) per pixel
    ground = used * math.cos(math.radians(48.2))
    assert 0.999 <= ground <= 2.001, ground
    QgsProject.instance().removeAllMapLayers()


def test_processing_refuses_without_a_phrase(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    with pytest.raises(QgsProcessingException, match="phrase"):
        processing.run(ALGORITHM, _parameters(sample_tif, tmp_path / "x.gpkg", PHRASE=""))
    assert not (tmp_path / "x.gpkg").exists()


WRAPPER = ROOT / "scripts" / "qgis_process.sh"


def _headless(*arguments: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``scripts/qgis_process.sh ARGUMENTS`` as the README prints it (no display, no QT_QPA_PLATFORM set)."""
    done = subprocess.run([str(WRAPPER), *arguments], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.skipif(shutil.which("qgis_process") is None, reason="qgis_process is not installed here")
def test_qgis_process_runs_the_readme_command_headless(sample_tif: Path, tmp_path: Path) -> None:
    """The README's headless commands, really run: the plugin from its ZIP, the bundled demo checkpoint."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(next(tmp_path.glob("rsrefseg2_qgis-*.zip"))).extractall(plugins)
    # A fresh HOME is a fresh QGIS profile (enabling the plugin there touches no real profile); the worker's
    # Python comes from the environment, not from the profile's settings.
    env = {"QGIS_PLUGINPATH": str(plugins), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RSREFSEG2_PYTHON": str(PYTHON)}
    _headless("plugins", "enable", "rsrefseg2_qgis", env=env, timeout=120)
    out = tmp_path / "out.gpkg"
    done = _headless("run", ALGORITHM, "--", f"INPUT={sample_tif}", "PHRASE=the red building at the top left",
                     f"OUTPUT={out}", env=env)
    layer = QgsVectorLayer(str(out), "headless", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633" and layer.featureCount() >= 1
    assert {f["checkpoint"] for f in layer.getFeatures()} == {paths.demo_checkpoint().name}
    assert "rsrefseg2-" not in done.stdout + done.stderr, "a temporary path reached the log"
    del layer
    # The PYTHON parameter beats the environment variable.
    chosen = tmp_path / "chosen.gpkg"
    _headless("run", ALGORITHM, "--", f"INPUT={sample_tif}", "PHRASE=the large pond", f"PYTHON={PYTHON}",
              "EXTENT=603000,603128,5339872,5340000 [EPSG:32633]", f"OUTPUT={chosen}",
              env={**env, "RSREFSEG2_PYTHON": str(tmp_path / "no-such-python")})
    assert QgsVectorLayer(str(chosen), "chosen", "ogr").isValid()


def test_cancelled_processing_run_writes_no_file(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: feedback.cancel() if percent > 15 else None)
    out = tmp_path / "cancelled.gpkg"
    result = processing.run(ALGORITHM, _parameters(sample_tif, out, SEARCH=1, TILE_SIZE=64, OVERLAP=8),
                            feedback=feedback)
    assert feedback.isCanceled() and "OUTPUT" not in result
    assert not out.exists()


def test_a_loaded_temporary_result_is_named_like_the_docks_layers(provider, sample_tif: Path,
                                                                  real_layer_tree_view) -> None:
    """It was "Segmented objects" (the output's description) for every run."""
    import processing

    processing.runAndLoadResults(ALGORITHM, _parameters(
        sample_tif, "TEMPORARY_OUTPUT", EXTENT="603000,603128,5339872,5340000 [EPSG:32633]"))
    assert [layer.name() for layer in _vector_layers()] == ["rsrefseg: the large white storage tank"]
    QgsProject.instance().removeAllMapLayers()
