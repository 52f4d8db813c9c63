"""Write detections as GeoJSON (always) and GeoPackage, atomically and without clobbering.

pyogrio writes both: its raw array API takes WKB geometries and numpy field arrays in one vectorised GDAL
call, so neither fiona nor geopandas is needed. Every file is first written completely under a scratch name in
the target folder; only then are the files put in place, all or none:

* without ``overwrite`` each one is hard-linked to its final name, which fails if the name exists, so checking
  and placing are one atomic step: of two runs writing the same path at once, exactly one wins;
* with ``overwrite`` the old files are kept under scratch names until every new file has replaced its old one;
  if any replace fails, the ones already replaced are restored, so the GeoPackage and GeoJSON always match.

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
from backend.files.stale import owned_prefix, sweep
from backend.output.preflight import MIN_FREE_BYTES, check_output_targets, os_error
from backend.output.probability import ProbabilityMaps, write_probability
from backend.output.vectorize import Detection

log = logging.getLogger(__name__)

# Scratch files (new outputs being written, old outputs kept until the swap is done): .rsrefseg-tmp-<host>-<pid>-…
SCRATCH_PREFIX = ".rsrefseg-tmp-"
# errno values of file systems that cannot hard-link (FAT, some network shares).
NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, getattr(errno, "ENOTSUP", -1),
                 getattr(errno, "EOPNOTSUPP", -1)}
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
    for folder in {Path(p).parent for p in paths.values()}:
        sweep(folder, owned_prefix(SCRATCH_PREFIX))
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
        if overwrite:
            replace_together(temps)
        else:
            place_new(temps)
    finally:
        for temp in temps:
            _remove_quietly(temp)
    return paths


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
    return temp


def place_new(temps: dict[str, str]) -> None:
    """Give each scratch file its final name, refusing atomically any name that exists; all or none.

    Args:
        temps: scratch file → final path; the scratch files are consumed.

    Raises:
        BackendError: ``output_exists`` naming the first final path that exists (the ones placed before it are
            removed again), or ``bad_request`` for another failure.
    """
    placed: list[str] = []
    try:
        for temp, final in temps.items():
            try:
                _link_new(temp, final)
            except FileExistsError as err:
                raise BackendError("output_exists", f"{final!r} already exists (another run may have just written "
                                   "it)", "choose another output name, delete the file, or pass --overwrite") from err
            except OSError as err:
                raise os_error(err, final) from err
            placed.append(final)
    except BaseException:
        for final in placed:
            _remove_quietly(final)
        raise


def _link_new(temp: str, final: str) -> None:
    """Move ``temp`` to ``final`` only if ``final`` does not exist, as one atomic step (``FileExistsError``)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        # No hard links here: claim the name exclusively, then move the complete file over the empty claim.
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(temp, final)
        return
    os.remove(temp)


def replace_together(temps: dict[str, str]) -> None:
    """Replace each final path by its scratch file, all or none.

    The old files are kept under scratch names (hard links, or copies where links are impossible) until every
    replace has succeeded; when one fails, the files already replaced get their old content back.

    Args:
        temps: scratch file → final path; the scratch files are consumed on success.

    Raises:
        BackendError: ``bad_request`` naming the file that could not be replaced.
    """
    backups: dict[str, str] = {}  # final path → its old content's scratch name
    replaced: list[str] = []
    try:
        for final in temps.values():
            if os.path.isfile(final):  # anything else in the way makes its replace fail below
                backups[final] = _keep_copy(final)
        for temp, final in temps.items():
            try:
                os.replace(temp, final)
            except OSError as err:
                error = os_error(err, final, "replace")
                raise BackendError(error.code, f"{error.message}; the existing outputs were left unchanged",
                                   error.hint) from err
            replaced.append(final)
    except BaseException:
        for final in replaced:
            _restore(final, backups)
        raise
    finally:
        for backup in backups.values():
            _remove_quietly(backup)


def _keep_copy(final: str) -> str:
    """Keep ``final``'s current content under a scratch name (a hard link when possible)."""
    backup = _scratch_name(final, ".old")
    try:
        try:
            os.link(final, backup)
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:
                raise
            shutil.copy2(final, backup)
    except OSError as err:
        _remove_quietly(backup)
        raise os_error(err, final, "replace") from err
    return backup


def _restore(final: str, backups: dict[str, str]) -> None:
    """Put ``final`` back as it was before this write (its old content, or no file)."""
    try:
        if final in backups:
            os.replace(backups[final], final)
            del backups[final]
        else:
            os.remove(final)
    except OSError as err:  # keep the backup: the user's old data must never be deleted
        log.error("could not restore %s (%s); its previous content is kept as %s", final, err,
                  backups.pop(final, "nothing"))


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
