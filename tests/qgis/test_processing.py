"""``processing.run("rsrefseg2:referringsegmentation", …)`` on the sample with the tiny random-init model."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback, QgsVectorLayer
from qgis_helpers import PYTHON

from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider

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


def test_processing_refuses_without_a_phrase(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    with pytest.raises(QgsProcessingException, match="phrase"):
        processing.run(ALGORITHM, _parameters(sample_tif, tmp_path / "x.gpkg", PHRASE=""))
    assert not (tmp_path / "x.gpkg").exists()


def _qgis_process() -> str | None:
    """The qgis_process binary; Debian's wrapper passes an option qgis_process 3.22 rejects, so prefer the .bin."""
    wrapper = shutil.which("qgis_process")
    if wrapper is None:
        return None
    binary = Path(wrapper).with_name("qgis_process.bin")
    return str(binary) if binary.is_file() else wrapper


@pytest.mark.skipif(_qgis_process() is None, reason="qgis_process is not installed here")
def test_qgis_process_runs_the_algorithm_headless(sample_tif: Path, tmp_path: Path) -> None:
    # The installable layout (metadata.txt inside the plugin folder), as a user gets it from the ZIP.
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(next(tmp_path.glob("rsrefseg2_qgis-*.zip"))).extractall(plugins)
    # The worker interpreter, set in the (fresh) profile the way the settings dialog stores it.
    profile = tmp_path / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "QGIS"
    profile.mkdir(parents=True)
    (profile / "QGIS3.ini").write_text(f"[rsrefseg2]\npython={PYTHON}\n", encoding="utf-8")
    out = tmp_path / "headless.gpkg"
    # A fresh HOME is a fresh QGIS profile: enabling the plugin there touches no real profile.
    env = {"QGIS_PLUGINPATH": str(plugins), "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    enabled = subprocess.run([_qgis_process(), "plugins", "enable", "rsrefseg2_qgis"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout[-2000:] + enabled.stderr[-2000:]
    done = subprocess.run([_qgis_process(), "run", ALGORITHM, "--", f"INPUT={sample_tif}",
                           "PHRASE=the white tank", "DEVICE=cpu", "TILE_SIZE=256", "OVERLAP=32",
                           "EXTENT=603000,603128,5339872,5340000 [EPSG:32633]", f"OUTPUT={out}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    layer = QgsVectorLayer(str(out), "headless", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    assert "query" in layer.fields().names()
    del layer


def test_cancelled_processing_run_writes_no_file(provider, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: feedback.cancel() if percent > 15 else None)
    out = tmp_path / "cancelled.gpkg"
    result = processing.run(ALGORITHM, _parameters(sample_tif, out, SEARCH=1, TILE_SIZE=64, OVERLAP=8),
                            feedback=feedback)
    assert feedback.isCanceled() and "OUTPUT" not in result
    assert not out.exists()
