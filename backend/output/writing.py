"""Write detections as GeoJSON (always) and GeoPackage, atomically and without clobbering.

Both files read back in the polygons' CRS; for a CRS without an EPSG code the GeoJSON carries it as WKT in its
legacy ``crs`` member (``backend.output.geojson_crs``).

pyogrio writes both: its raw array API takes WKB geometries and numpy field arrays in one vectorised GDAL
call, so neither fiona nor geopandas is needed. Every file is first written completely under a scratch name in
the target folder; only then, under the output folders' locks (``backend.files.lock``), are the files put in
place as one change, all or none (``backend.output.swap``):

* without ``overwrite`` a name that exists refuses the change (checked atomically): of two runs writing the
  same path at once, exactly one wins and the other gets ``output_exists``;
* with ``overwrite`` two runs take turns (the second waits for the first's swap, milliseconds): the pair left
  is the second run's, whole, as if they had run one after the other;
* a writer killed half-way is rolled back by the next write to the folder: old files restored, lone new
  files removed.

Scratch names carry the writer's machine and PID, so those of a killed run are swept by the next write to the
folder from the same machine.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from rasterio.crs import CRS

from backend.errors import BackendError
from backend.files.lock import WAIT_SECONDS, LockTimeoutError, folder_locks
from backend.files.stale import owned_prefix, sweep
from backend.output.geojson_crs import keep_geojson_crs
from backend.output.preflight import MIN_FREE_BYTES, check_output_targets, os_error
from backend.output.probability import ProbabilityMaps, write_probability
from backend.output.swap import roll_back_dead, swap_in
from backend.output.vectorize import Detection

log = logging.getLogger(__name__)

# Scratch files (new outputs being written, old outputs kept until the swap is done): .rsrefseg-tmp-<host>-<pid>-…
SCRATCH_PREFIX = ".rsrefseg-tmp-"
DRIVERS = {"geojson": ("GeoJSON", ".geojson"), "gpkg": ("GPKG", ".gpkg")}


@dataclass(frozen=True)
class PhraseDetections:
    """The polygons found for one phrase.

    Attributes:
        query: the phrase.
        detections: its polygons.
    """

    query: str
    detections: tuple[Detection, ...]


def output_paths(output_dir: str, name: str, formats: Sequence[str] = ("geojson", "gpkg")) -> dict[str, str]:
    """Final path of each output format: ``output_dir/name.<ext>``."""
    return {fmt: str(Path(output_dir) / f"{name}{DRIVERS[fmt][1]}") for fmt in formats}


def _columns(layers: Sequence[PhraseDetections], model: str, checkpoint: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """WKB geometries (K,) and the field arrays [query, score, area_m2, model, checkpoint]."""
    rows = [(layer.query, d) for layer in layers for d in layer.detections]
    geometry = np.array([shapely.to_wkb(d.geometry) for _, d in rows], dtype=object)
    fields = [np.array([q for q, _ in rows], dtype=object),
              np.array([d.score for _, d in rows], dtype=np.float64),
              np.array([d.area_m2 for _, d in rows], dtype=np.float64),
              np.array([model] * len(rows), dtype=object),
              np.array([checkpoint] * len(rows), dtype=object)]
    return geometry, fields


def write_outputs(layers: Sequence[PhraseDetections], crs: CRS, paths: dict[str, str], *, model: str,
                  checkpoint: str, overwrite: bool = False, probability: ProbabilityMaps | None = None
                  ) -> dict[str, str]:
    """Write every phrase's polygons into one layer per file, all files or none.

    Args:
        layers: detections per phrase (a ``query`` attribute tells them apart).
        crs: the polygons' CRS.
        paths: format ("geojson" | "gpkg", and "probability" with ``probability``) → final path (see
            ``output_paths``).
        model: the model description stored in the ``model`` attribute.
        checkpoint: the checkpoint name stored in the ``checkpoint`` attribute.
        overwrite: replace existing files instead of refusing.
        probability: the phrases' probability maps, written as a GeoTIFF to ``paths["probability"]``
            (``output.probability``), placed together with the vectors.

    Returns:
        ``paths``, once every file is in place.

    Raises:
        BackendError: ``output_exists`` when a file exists without ``overwrite`` (also when another run created
            it meanwhile), ``bad_request`` when a file cannot be written or replaced (it names the file; the
            previous files are then left as they were).
    """
    if ("probability" in paths) != (probability is not None):
        raise ValueError("a probability path needs the probability maps, and the maps a path")
    check_output_targets(paths.values(), overwrite)
    geometry, fields = _columns(layers, model, checkpoint)
    temps: dict[str, str] = {}  # scratch file → final path
    try:
        for fmt, path in paths.items():
            if fmt == "probability":
                temp = _scratch_name(path, ".tif")
                temps[temp] = path
                write_probability(temp, probability)
            else:
                temps[_write_scratch(fmt, path, geometry, fields, crs)] = path
        _swap_locked(temps, overwrite)
    finally:
        for temp in temps:
            _remove_quietly(temp)
    return paths


def _swap_locked(temps: dict[str, str], overwrite: bool) -> None:
    """Under the output folders' locks: undo dead writers' half-done swaps, sweep their scratch, then swap."""
    folders = {os.path.dirname(os.path.abspath(final)) for final in temps.values()}
    try:
        with folder_locks(folders):
            for folder in folders:
                roll_back_dead(folder)
                sweep(folder, owned_prefix(SCRATCH_PREFIX))
            swap_in(temps, lambda final: _scratch_name(final, ".old"), overwrite=overwrite)
    except LockTimeoutError as err:
        raise BackendError("bad_request", f"another run kept {sorted(folders)} locked for {WAIT_SECONDS:.0f} s",
                           "wait for the other run to finish, or write to another folder") from err
    except OSError as err:  # the lock file cannot be created
        raise os_error(err, next(iter(folders))) from err


def layer_name(final: str) -> str:
    """The layer inside an output file: its file stem, unless GeoPackage reserves it ("gpkg…" names)."""
    stem = Path(final).stem
    return f"layer_{stem}" if stem.lower().startswith("gpkg") else stem


def _scratch_name(final: str, suffix: str) -> str:
    """A unique hidden name beside ``final`` that ends with ``suffix`` and names this machine and process."""
    path = Path(final)
    owner = f"{owned_prefix(SCRATCH_PREFIX)}{os.getpid()}"
    return str(path.with_name(f"{owner}-{secrets.token_hex(4)}-{path.stem[:64]}{suffix}"))  # fits where final fits


def _write_scratch(fmt: str, final: str, geometry: np.ndarray, fields: list[np.ndarray], crs: CRS) -> str:
    """Write one complete output file under a scratch name beside ``final``; return that name."""
    driver, ext = DRIVERS[fmt]
    temp = _scratch_name(final, ext)
    try:
        pyogrio.raw.write(temp, geometry, fields, ["query", "score", "area_m2", "model", "checkpoint"],
                          layer=layer_name(final), driver=driver, geometry_type="Polygon", crs=crs.to_wkt())
    except OSError as err:
        _remove_quietly(temp)
        raise os_error(err, final) from err
    except Exception as err:  # GDAL reports I/O failures as its own error types, with the OS reason in the text
        _remove_quietly(temp)
        if "No space left" in str(err) or shutil.disk_usage(Path(final).parent).free < MIN_FREE_BYTES:
            raise os_error(OSError(errno.ENOSPC, "No space left on device"), final) from err
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise BackendError("bad_request", f"cannot write {final!r}: {reason}",
                           "choose another output name or folder, and check its free space and permissions") from err
    if fmt == "geojson":
        try:
            keep_geojson_crs(temp, crs, final)
        except BaseException:
            _remove_quietly(temp)
            raise
    return temp


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
