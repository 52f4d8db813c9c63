"""The batch algorithm's files: one GeoPackage per input, named after it, in the output folder.

Names are settled before anything runs, so that existing files are refused up front (unless the user ticked
Overwrite). Each GeoPackage is written completely under a scratch name in the same folder and only then put in
place: without overwrite by a hard link, which fails when the name was taken meanwhile (no file is ever
replaced), with overwrite by an atomic rename. A reader never sees half a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsWkbTypes,
)

from ..i18n import tr
from ..raster_source import local_file_path

SCRATCH_SUFFIX = ".rsrefseg2-partial"
UNSAFE_CHARACTERS = re.compile(r"[^\w.\-]+")


class BatchOutputError(Exception):
    """A GeoPackage could not be put in place (the message names it and says why)."""


def output_stems(layers: Sequence[QgsRasterLayer]) -> list[str]:
    """One file stem per layer: the file's name without extension (a web map: the layer's name), characters
    other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``; repeats numbered ``name_2``, ``name_3``…"""
    stems: list[str] = []
    for layer in layers:
        path = local_file_path(layer)
        wanted = UNSAFE_CHARACTERS.sub("_", Path(path).stem if path else layer.name()).strip("._") or "raster"
        stem, number = wanted, 1
        while stem.lower() in (taken.lower() for taken in stems):  # case-insensitive file systems too
            number += 1
            stem = f"{wanted}_{number}"
        stems.append(stem)
    return stems


def existing_files(folder: Path, stems: Sequence[str]) -> list[Path]:
    """The GeoPackages of ``stems`` that already exist in ``folder``."""
    return [folder / f"{stem}.gpkg" for stem in stems if (folder / f"{stem}.gpkg").exists()]


def write_geopackage(path: Path, *, table: str, features: Sequence[QgsFeature], fields: QgsFields,
                     crs: QgsCoordinateReferenceSystem, transform_context: QgsCoordinateTransformContext,
                     overwrite: bool) -> None:
    """Write ``features`` as the multipolygon table ``table`` of a new GeoPackage ``path``, then put it in place.

    Raises:
        BatchOutputError: GDAL could not write it, or ``path`` exists and ``overwrite`` is False.
    """
    scratch = path.with_name(f".{path.stem}.{os.getpid()}{SCRATCH_SUFFIX}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    try:
        writer = QgsVectorFileWriter.create(str(scratch), fields, QgsWkbTypes.Type.MultiPolygon, crs,
                                            transform_context, options)
        failed = writer.hasError() != QgsVectorFileWriter.WriterError.NoError
        if not failed:
            failed = not writer.addFeatures(list(features), QgsFeatureSink.Flag.FastInsert)
        message = writer.errorMessage()
        del writer  # closes the file
        if failed:
            raise BatchOutputError(tr("Cannot write {path}: {message}").format(path=path, message=message))
        _put_in_place(scratch, path, overwrite)
    finally:
        scratch.unlink(missing_ok=True)


def _put_in_place(scratch: Path, path: Path, overwrite: bool) -> None:
    try:
        if overwrite:
            os.replace(scratch, path)
            return
        try:
            os.link(scratch, path)  # fails if the name exists: never replaces a file
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links (FAT, some shares): checked, then renamed
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(scratch, path)
    except FileExistsError as exc:
        raise BatchOutputError(tr("{path} appeared while the batch ran; it was left as it is.").format(
            path=path)) from exc
    except OSError as exc:
        raise BatchOutputError(tr("Cannot write {path}: {error}").format(
            path=path, error=exc.strerror or exc)) from exc
