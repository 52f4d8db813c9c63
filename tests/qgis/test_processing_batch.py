"""``processing.run("rsrefseg2:batchreferringsegmentation", …)`` with the demo model on copies of the sample: one
worker, one model load (counted in the real worker's own log), a GeoPackage per input, a merged output; a bad
input fails alone; existing files are refused; cancel stops between inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis_helpers import PYTHON

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.client import BackendClient
from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider

ROOT = Path(__file__).resolve().parents[2]
BATCH = "rsrefseg2:batchreferringsegmentation"
SINGLE = "rsrefseg2:referringsegmentation"
PHRASE = "the red building at the top left"
LOAD_LINE = "loading checkpoint="  # what backend.worker logs once per model it really loads


class LoggedClient:
    """A fresh real worker client whose worker's stderr lines are kept (a new worker holds no model)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.client = BackendClient(python=PYTHON, backend_root=paths.backend_root(), log=self.lines.append)

    @property
    def loads(self) -> int:
        """How many models the worker loaded."""
        return sum(LOAD_LINE in line for line in self.lines)


@pytest.fixture
def logged(qgis_processing) -> Iterator[LoggedClient]:
    logged = LoggedClient()
    provider = RSRefSeg2Provider(client=lambda *args: logged.client)
    QgsApplication.processingRegistry().addProvider(provider)
    yield logged
    QgsApplication.processingRegistry().removeProvider(provider)
    logged.client.shutdown()


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps the errors the algorithm reports."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 (QGIS's names)
        self.errors.append(error)
        super().reportError(error, fatalError)


def _copies(sample_tif: Path, names: tuple[str, ...]) -> list[Path]:
    return [Path(shutil.copy(sample_tif, sample_tif.with_name(name))) for name in names]


def _not_georeferenced(path: Path) -> Path:
    """An RGB GeoTIFF without CRS or geotransform."""
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 64, 64, 3, gdal.GDT_Byte)
    for band in range(1, 4):
        dataset.GetRasterBand(band).WriteArray(np.full((64, 64), 60 * band, dtype=np.uint8))
    dataset = None
    return path


def _parameters(inputs: list[Path], folder: Path, merged: Path | str, **changes) -> dict:
    parameters = {"INPUTS": [str(path) for path in inputs], "PHRASE": PHRASE, "DEVICE": "cpu", "TILE_SIZE": 256,
                  "OVERLAP": 32, "OUTPUT_FOLDER": str(folder), "OUTPUT": str(merged)}
    parameters.update(changes)
    return parameters


def _features(path: Path) -> list[tuple[str, str, float]]:
    """(query, geometry WKT, score) of every feature in the GeoPackage, sorted."""
    layer = QgsVectorLayer(str(path), path.stem, "ogr")
    assert layer.isValid(), path
    rows = sorted((f["query"], f.geometry().asWkt(3), round(f["score"], 6)) for f in layer.getFeatures())
    del layer
    return rows


def test_three_inputs_share_one_model_load_and_a_bad_input_fails_alone(logged, sample_tif: Path,
                                                                        tmp_path: Path) -> None:
    import processing

    inputs = [sample_tif, *_copies(sample_tif, ("north.tif", "south.tif"))]
    bad = _not_georeferenced(tmp_path / "scan.tif")
    folder, merged = tmp_path / "out", tmp_path / "merged.gpkg"
    feedback = RecordingFeedback()
    # The bad input first: the merged layer takes the CRS of the first input that runs, not of the first given.
    result = processing.run(BATCH, _parameters([bad, *inputs], folder, merged), feedback=feedback)
    assert (result["DONE"], result["FAILED"]) == (3, 1)
    assert sorted(path.name for path in folder.iterdir()) == ["north.gpkg", "sample.gpkg", "south.gpkg"]
    assert logged.loads == 1, [line for line in logged.lines if LOAD_LINE in line]
    (error,) = feedback.errors
    assert error.startswith("scan:") and "has no coordinate reference system" in error
    per_input = {path.stem: _features(folder / f"{path.stem}.gpkg") for path in inputs}
    assert all(per_input.values()), "the demo model finds the red building in every copy"
    assert per_input["sample"] == per_input["north"] == per_input["south"]
    layer = QgsVectorLayer(result["OUTPUT"], "merged", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    union = sorted((f["source"], f["query"], f.geometry().asWkt(3), round(f["score"], 6))
                   for f in layer.getFeatures())
    assert union == sorted((stem, *row) for stem, rows in per_input.items() for row in rows)
    del layer


def test_existing_geopackages_are_refused_before_any_work_unless_replacing_is_ticked(logged, sample_tif: Path,
                                                                                     tmp_path: Path) -> None:
    import processing

    folder = tmp_path / "out"
    folder.mkdir()
    mine = folder / "sample.gpkg"
    mine.write_bytes(b"the user's own file")
    with pytest.raises(QgsProcessingException, match="Replace existing GeoPackages"):
        processing.run(BATCH, _parameters([sample_tif], folder, tmp_path / "merged.gpkg"))
    assert mine.read_bytes() == b"the user's own file"
    assert not logged.client.running and not (tmp_path / "merged.gpkg").exists()
    processing.run(BATCH, _parameters([sample_tif], folder, tmp_path / "merged.gpkg", OVERWRITE=True))
    assert _features(mine) and not list(folder.glob(".*partial*"))


def test_the_batch_dialog_running_the_single_algorithm_per_row_loads_the_model_once(logged, sample_tif: Path,
                                                                                   tmp_path: Path) -> None:
    import processing

    for row, raster in enumerate([sample_tif, *_copies(sample_tif, ("b.tif", "c.tif"))]):
        processing.run(SINGLE, {"INPUT": str(raster), "PHRASE": PHRASE, "DEVICE": "cpu", "TILE_SIZE": 256,
                                "OVERLAP": 32, "EXTENT": "603000,603128,5339872,5340000 [EPSG:32633]",
                                "OUTPUT": str(tmp_path / f"row{row}.gpkg")})
        assert (tmp_path / f"row{row}.gpkg").is_file()
    assert logged.loads == 1


def test_cancel_stops_the_running_input_and_the_ones_after_it(logged, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    inputs = [sample_tif, *_copies(sample_tif, ("second.tif", "third.tif"))]
    folder, merged = tmp_path / "out", tmp_path / "merged.gpkg"
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: feedback.cancel() if percent > 40 else None)
    result = processing.run(BATCH, _parameters(inputs, folder, merged, SEARCH=1, TILE_SIZE=64, OVERLAP=8),
                            feedback=feedback)
    assert feedback.isCanceled() and "OUTPUT" not in result
    assert sorted(path.name for path in folder.iterdir()) == ["sample.gpkg"]
    assert not merged.exists()


def test_every_batch_parameter_has_help_and_it_runs_threaded(logged) -> None:
    algorithm = QgsApplication.processingRegistry().algorithmById(BATCH)
    assert int(algorithm.flags() & algorithm.Flag.FlagNoThreading) == 0
    assert algorithm.parameterDefinition("OVERWRITE").defaultValue() is False
    for parameter in algorithm.parameterDefinitions():
        assert parameter.help(), parameter.name()


def test_inputs_in_other_crss_are_merged_in_the_first_inputs_crs(logged, sample_tif: Path, tmp_path: Path) -> None:
    import processing

    mercator = tmp_path / "mercator.tif"
    gdal.Warp(str(mercator), str(sample_tif), dstSRS="EPSG:3857")
    folder = tmp_path / "out"
    result = processing.run(BATCH, _parameters([sample_tif, mercator], folder, tmp_path / "merged.gpkg"))
    assert (result["DONE"], result["FAILED"]) == (2, 0)
    own = QgsVectorLayer(str(folder / "mercator.gpkg"), "own", "ogr")
    assert own.crs().authid() == "EPSG:3857" and own.featureCount() >= 1
    del own
    merged = QgsVectorLayer(result["OUTPUT"], "merged", "ogr")
    assert merged.crs().authid() == "EPSG:32633"
    sample_extent = QgsRasterLayer(str(sample_tif), "sample", "gdal").extent()
    reprojected = [f for f in merged.getFeatures() if f["source"] == "mercator"]
    assert reprojected and all(sample_extent.contains(f.geometry().boundingBox()) for f in reprojected)
    del merged


def test_a_geopackage_that_appears_meanwhile_is_never_replaced(qgis_app, tmp_path: Path) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransformContext

    from rsrefseg2_qgis.processing.batch_outputs import BatchOutputError, write_geopackage
    from rsrefseg2_qgis.processing.shared import result_fields

    theirs = tmp_path / "sample.gpkg"
    theirs.write_bytes(b"written by someone else while the batch ran")
    with pytest.raises(BatchOutputError, match="appeared while the batch ran"):
        write_geopackage(theirs, table="sample", features=[], fields=result_fields(),
                         crs=QgsCoordinateReferenceSystem("EPSG:32633"),
                         transform_context=QgsCoordinateTransformContext(), overwrite=False)
    assert theirs.read_bytes() == b"written by someone else while the batch ran"
    assert [path.name for path in tmp_path.iterdir()] == ["sample.gpkg"]


@pytest.mark.skipif(shutil.which("qgis_process") is None, reason="qgis_process is not installed here")
def test_qgis_process_runs_the_batch_headless_from_the_plugin_zip(sample_tif: Path, tmp_path: Path) -> None:
    """Several INPUTS= on the qgis_process command line, the plugin installed from its ZIP (fresh profile)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    zipfile.ZipFile(next(tmp_path.glob("rsrefseg2_qgis-*.zip"))).extractall(tmp_path / "plugins")
    env = {"QGIS_PLUGINPATH": str(tmp_path / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RSREFSEG2_PYTHON": str(PYTHON)}
    wrapper = str(ROOT / "scripts" / "qgis_process.sh")
    subprocess.run([wrapper, "plugins", "enable", "rsrefseg2_qgis"], env=env, check=True, capture_output=True,
                   timeout=120)
    (copy,) = _copies(sample_tif, ("copy.tif",))
    done = subprocess.run([wrapper, "run", BATCH, "--", f"INPUTS={sample_tif}", f"INPUTS={copy}", f"PHRASE={PHRASE}",
                           f"OUTPUT_FOLDER={tmp_path / 'out'}", f"OUTPUT={tmp_path / 'merged.gpkg'}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["copy.gpkg", "sample.gpkg"]
    merged = QgsVectorLayer(str(tmp_path / "merged.gpkg"), "merged", "ogr")
    assert merged.isValid() and {f["source"] for f in merged.getFeatures()} == {"copy", "sample"}
    del merged
